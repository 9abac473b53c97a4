/* eBPF program for coral_lib/ops/trace.py (bcc, tracepoints only): one event per exec or
 * connect, scoped by cgroup ancestor and/or PID namespace. trace.py sets CGROUP_LEVEL,
 * CGROUP_ID, PIDNS_DEV, PIDNS_INO and KIND_EXEC with -D cflags. */
struct event_t {
    u64 cgroup_id;
    u32 pid, tid, ns_pid, uid;
    u16 family, port;
    u8 addr[16];
    char comm[16];
    char filename[256];
};
BPF_PERF_OUTPUT(events);
BPF_PERCPU_ARRAY(scratch, struct event_t, 1);

static __always_inline struct event_t *scoped_event(void) {
    int zero = 0;
    struct event_t *ev = scratch.lookup(&zero);
    if (!ev)
        return 0;
    __builtin_memset(ev, 0, sizeof(*ev));
#if CGROUP_LEVEL >= 0
    if (bpf_get_current_ancestor_cgroup_id(CGROUP_LEVEL) != CGROUP_ID)
        return 0;
#endif
#if PIDNS_INO
    struct bpf_pidns_info ns = {};
    if (bpf_get_ns_current_pid_tgid(PIDNS_DEV, PIDNS_INO, &ns, sizeof(ns)))
        return 0;
    ev->ns_pid = ns.tgid;
#endif
    u64 id = bpf_get_current_pid_tgid();
    ev->pid = id >> 32;
    ev->tid = (u32)id;
    ev->uid = (u32)bpf_get_current_uid_gid();
    ev->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(ev->comm, sizeof(ev->comm));
    return ev;
}

#if KIND_EXEC
TRACEPOINT_PROBE(sched, sched_process_exec) {
    struct event_t *ev = scoped_event();
    if (!ev)
        return 0;
    u16 off = args->data_loc_filename & 0xFFFF;  /* __data_loc: offset in the low half */
    bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), (char *)args + off);
    events.perf_submit(args, ev, sizeof(*ev));
    return 0;
}
#else
TRACEPOINT_PROBE(syscalls, sys_enter_connect) {
    struct event_t *ev = scoped_event();
    if (!ev)
        return 0;
    u8 sa[28] = {};  /* sockaddr_in (16) or sockaddr_in6 (28), read as bytes */
    if (bpf_probe_read_user(sa, 16, (void *)args->uservaddr))
        return 0;
    ev->family = sa[0] | (sa[1] << 8);
    ev->port = (sa[2] << 8) | sa[3];
    if (ev->family == 2) {
        __builtin_memcpy(ev->addr, sa + 4, 4);
    } else if (ev->family == 10 && args->addrlen >= 24) {
        if (bpf_probe_read_user(sa, 24, (void *)args->uservaddr))
            return 0;
        __builtin_memcpy(ev->addr, sa + 8, 16);
    } else {
        return 0;  /* unix and other families: not network connections */
    }
    events.perf_submit(args, ev, sizeof(*ev));
    return 0;
}
#endif
