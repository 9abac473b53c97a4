"""Write the recorded /proc fixture trees under tests/runtime/testdata/<case>/.

The cgroup, cmdline and status files follow the formats each kind of node writes
(containerd / CRI-O / docker / podman, cgroup v1 and v2, cgroupfs and systemd drivers,
private cgroup namespaces). Run
`python -m tests.runtime.make_fixtures` to rewrite them; each case's case.json holds
the environment, the extra files (service account dir, CRI socket) and the expectation.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil

HERE = pathlib.Path(__file__).parent / "testdata"

ALL_CAPS = "000001ffffffffff"
DEFAULT_CAPS = "00000000a80425fb"  # docker/containerd default set: no SYS_ADMIN/PTRACE/BPF

ID_AGENT = "a" * 12 + "0123456789abcdef" * 3 + "aaaa"
ID_APP = "b" * 12 + "0123456789abcdef" * 3 + "bbbb"
ID_DB = "c" * 12 + "0123456789abcdef" * 3 + "cccc"
ID_PAUSE = "d" * 12 + "0123456789abcdef" * 3 + "dddd"
ID_OTHER = "e" * 12 + "0123456789abcdef" * 3 + "eeee"
UID = "3f1c5b2e-8a7d-4c61-9e2f-0b4a6d8c1e57"
UID2 = "7a9e0c4d-1b2f-4e3a-8c5d-6f7e8a9b0c1d"

V1_CONTROLLERS = ("cpu,cpuacct", "memory", "pids", "blkio", "devices", "freezer", "name=systemd")


def v1(path: str) -> str:
    return "".join(f"{12 - i}:{c}:{path}\n" for i, c in enumerate(V1_CONTROLLERS))


def v2(path: str) -> str:
    return f"0::{path}\n"


def kubepods(uid: str, cid: str, qos: str = "besteffort") -> str:
    return f"/kubepods/{qos}/pod{uid}/{cid}"


def systemd_pod(uid: str, cid: str, runtime: str, qos: str = "burstable") -> str:
    return (f"/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid.replace('-', '_')}"
            f".slice/{runtime}-{cid}.scope")


INIT = ["/sbin/init"]
PAUSE = ["/pause"]
AGENT = ["/usr/local/bin/coral", "agent", "start"]
SA = {"sa": True}
K8S_ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "POD_NAME": "shop-7d9f", "POD_NAMESPACE":
           "shop", "POD_UID": UID, "NODE_NAME": "node-a"}

# case -> self pid, processes {pid: (cmdline, cgroup, mount ns inode)}, env, extras, expect
CASES: dict[str, dict] = {
    "native_systemd_v2": dict(
        self=812, caps=ALL_CAPS,
        procs={1: (INIT, v2("/init.scope"), 1), 812: (AGENT, v2("/system.slice/coral.service"), 1),
               640: (["/usr/sbin/sshd"], v2("/system.slice/ssh.service"), 1)},
        expect=dict(mode="NATIVE", visibility="host", exec_backend="local", can_exec=True)),
    "native_v1_hybrid": dict(
        self=2301, caps=ALL_CAPS,
        procs={1: (INIT, v1("/"), 1), 2301: (AGENT, v1("/user.slice"), 1)},
        expect=dict(mode="NATIVE", visibility="host", exec_backend="local")),
    "container_docker_v1": dict(
        self=7, caps=DEFAULT_CAPS,
        procs={1: (["/bin/sh", "-c", "coral agent start"], v1(f"/docker/{ID_AGENT}"), 5),
               7: (AGENT, v1(f"/docker/{ID_AGENT}"), 5)},
        expect=dict(mode="CONTAINER", visibility="host", exec_backend="local", can_exec=True,
                    can_trace=False, container_id=ID_AGENT)),
    "container_docker_scope_v2": dict(
        self=1, caps=DEFAULT_CAPS,
        procs={1: (AGENT, v2(f"/system.slice/docker-{ID_AGENT}.scope"), 5)},
        expect=dict(mode="CONTAINER", container_id=ID_AGENT)),
    "container_podman_cgroupns_v2": dict(
        self=1, caps=DEFAULT_CAPS, env={"container": "podman"},
        procs={1: (AGENT, v2(f"/../libpod-{ID_AGENT}.scope/container"), 5)},
        expect=dict(mode="CONTAINER", container_id=ID_AGENT)),
    "daemonset_containerd_v1": dict(
        self=4410, caps=ALL_CAPS, env=K8S_ENV, extras=dict(SA, cri=True),
        procs={1: (INIT, v1("/init.scope"), 1),
               4410: (AGENT, v1(kubepods(UID, ID_AGENT, "burstable")), 20),
               5100: (PAUSE, v1(kubepods(UID2, ID_PAUSE)), 21),
               5120: (["nginx"], v1(kubepods(UID2, ID_APP)), 22),
               900: (["/usr/bin/containerd"], v1("/system.slice/containerd.service"), 1)},
        expect=dict(mode="K8S_DAEMONSET", visibility="all_node_pods", exec_backend="cri",
                    can_exec=True, can_shell=True, can_tap=True, can_trace=True,
                    node_name="node-a", pod_uid=UID, cri_socket="run/containerd/containerd.sock")),
    "daemonset_crio_systemd_v2_no_socket": dict(
        self=3002, caps=ALL_CAPS, env=K8S_ENV, extras=SA,
        procs={1: (INIT, v2("/init.scope"), 1),
               3002: (AGENT, v2(systemd_pod(UID, ID_AGENT, "crio")), 20),
               3001: (["/usr/bin/conmon"], v2(systemd_pod(UID, ID_AGENT, "crio-conmon")), 1),
               3100: (["java"], v2(systemd_pod(UID2, ID_APP, "crio")), 22)},
        expect=dict(mode="K8S_DAEMONSET", visibility="all_node_pods", exec_backend="nsenter",
                    can_exec=True, container_id=ID_AGENT)),
    "daemonset_unprivileged": dict(
        self=3002, caps=DEFAULT_CAPS, env=K8S_ENV, extras=SA,
        procs={1: (INIT, v2("/init.scope"), 1),
               3002: (AGENT, v2(systemd_pod(UID, ID_AGENT, "cri-containerd")), 20)},
        expect=dict(mode="K8S_DAEMONSET", exec_backend="nsenter", can_exec=False,
                    exec_reason="namespace entry needs CAP_SYS_ADMIN, CAP_SYS_PTRACE",
                    can_tap=False, can_trace=False)),
    "sidecar_containerd_v1": dict(
        self=40, caps=ALL_CAPS, env=K8S_ENV, extras=SA,
        procs={1: (PAUSE, v1(kubepods(UID, ID_PAUSE)), 10),
               7: (["nginx", "-g", "daemon off;"], v1(kubepods(UID, ID_APP)), 11),
               9: (["postgres"], v1(kubepods(UID, ID_DB)), 12),
               40: (AGENT, v1(kubepods(UID, ID_AGENT)), 13)},
        expect=dict(mode="K8S_SIDECAR", visibility="own_pod", exec_backend="chroot",
                    can_exec=True, can_shell=True, pod_uid=UID, container_id=ID_AGENT)),
    # issue 14: the sidecar needs no added capability (chroot as the app's user)
    "sidecar_default_caps": dict(
        self=40, caps=DEFAULT_CAPS, env=K8S_ENV, extras=SA,
        procs={1: (PAUSE, v1(kubepods(UID, ID_PAUSE)), 10),
               7: (["nginx", "-g", "daemon off;"], v1(kubepods(UID, ID_APP)), 11),
               40: (AGENT, v1(kubepods(UID, ID_AGENT)), 13)},
        expect=dict(mode="K8S_SIDECAR", exec_backend="chroot", can_exec=True, can_shell=True,
                    can_tap=True, can_trace=False)),
    "sidecar_without_setuid": dict(
        self=40, caps="00000000a804257b", env=K8S_ENV, extras=SA,
        procs={1: (PAUSE, v1(kubepods(UID, ID_PAUSE)), 10),
               7: (["nginx", "-g", "daemon off;"], v1(kubepods(UID, ID_APP)), 11),
               40: (AGENT, v1(kubepods(UID, ID_AGENT)), 13)},
        expect=dict(mode="K8S_SIDECAR", exec_backend="chroot", can_exec=False,
                    exec_reason="entering the app's filesystem needs CAP_SETUID")),
    "sidecar_containerd_systemd_v2": dict(
        self=40, caps=ALL_CAPS, env=K8S_ENV, extras=SA,
        procs={1: (PAUSE, v2(systemd_pod(UID, ID_PAUSE, "cri-containerd")), 10),
               7: (["node", "server.js"], v2(systemd_pod(UID, ID_APP, "cri-containerd")), 11),
               40: (AGENT, v2(systemd_pod(UID, ID_AGENT, "cri-containerd")), 13)},
        expect=dict(mode="K8S_SIDECAR", visibility="own_pod", exec_backend="chroot")),
    "sidecar_cgroupns_v2": dict(  # private cgroup namespaces: containers told apart by mnt ns
        self=40, caps=ALL_CAPS, env=K8S_ENV, extras=SA,
        procs={1: (PAUSE, v2("/.."), 10), 7: (["nginx"], v2("/.."), 11),
               40: (AGENT, v2("/"), 13)},
        expect=dict(mode="K8S_SIDECAR", visibility="own_pod", can_exec=True, container_id="")),
    "k8s_pod_without_shared_pid": dict(
        self=1, caps=ALL_CAPS, env=K8S_ENV, extras=SA,
        procs={1: (AGENT, v1(kubepods(UID, ID_AGENT)), 13)},
        expect=dict(mode="K8S_SIDECAR", can_exec=False,
                    exec_reason="no other container of the pod is visible: enable"
                                " shareProcessNamespace")),
    "forced_daemonset_in_sidecar": dict(
        self=40, caps=ALL_CAPS, env={**K8S_ENV, "CORAL_AGENT_MODE": "daemonset"}, extras=SA,
        procs={1: (PAUSE, v1(kubepods(UID, ID_PAUSE)), 10),
               7: (["nginx"], v1(kubepods(UID, ID_APP)), 11),
               40: (AGENT, v1(kubepods(UID, ID_AGENT)), 13)},
        expect=dict(mode="K8S_DAEMONSET", visibility="all_node_pods", forced=True, warnings=[
            "CORAL_AGENT_MODE=daemonset but PID 1 is a pause process, not the host's init:"
            " hostPID is not enabled"])),
    "forced_sidecar_without_shared_pid": dict(
        self=1, caps=ALL_CAPS, env={**K8S_ENV, "CORAL_AGENT_MODE": "sidecar"}, extras=SA,
        procs={1: (AGENT, v1(kubepods(UID, ID_AGENT)), 13)},
        expect=dict(mode="K8S_SIDECAR", forced=True, can_exec=False, warnings=[
            "CORAL_AGENT_MODE=sidecar but PID 1 is not a pause process and no other container"
            " is visible: no shared PID namespace (shareProcessNamespace: true)"])),
    "forced_host_in_daemonset": dict(
        self=4410, caps=ALL_CAPS, env={**K8S_ENV, "CORAL_AGENT_MODE": "host"}, extras=SA,
        procs={1: (INIT, v1("/"), 1), 4410: (AGENT, v1(kubepods(UID, ID_AGENT)), 20)},
        expect=dict(mode="NATIVE", exec_backend="local", forced=True, warnings=[
            "CORAL_AGENT_MODE=host but service account dir present: this looks like a"
            " Kubernetes pod"])),
    "forced_mode_invalid": dict(
        self=812, caps=ALL_CAPS, env={"CORAL_AGENT_MODE": "cluster"},
        procs={1: (INIT, v2("/init.scope"), 1), 812: (AGENT, v2("/system.slice/c.service"), 1)},
        expect=dict(mode="NATIVE", forced=False, warnings=[
            "CORAL_AGENT_MODE='cluster' is not one of daemonset, sidecar, host; ignored,"
            " detected NATIVE"])),
}


def _status(name: str, caps: str) -> str:
    return (f"Name:\t{name}\nState:\tS (sleeping)\nCapInh:\t0000000000000000\n"
            f"CapPrm:\t{caps}\nCapEff:\t{caps}\nCapBnd:\t{caps}\nCapAmb:\t0000000000000000\n")


def write_case(name: str, case: dict, *, base: pathlib.Path = HERE) -> None:
    root = base / name
    shutil.rmtree(root, ignore_errors=True)
    proc = root / "proc"
    for pid, (cmdline, cgroup, mnt) in case["procs"].items():
        d = proc / str(pid)
        (d / "ns").mkdir(parents=True)
        (d / "cmdline").write_bytes(("\0".join(cmdline) + "\0").encode())
        (d / "cgroup").write_text(cgroup)
        caps = case["caps"] if pid == case["self"] else ALL_CAPS
        (d / "status").write_text(_status(os.path.basename(cmdline[0]), caps))
        os.symlink(f"mnt:[40265{31840 + mnt}]", d / "ns" / "mnt")
    os.symlink(str(case["self"]), proc / "self")
    extras = case.get("extras", {})
    if extras.get("sa"):
        sa = root / "serviceaccount"
        sa.mkdir()
        (sa / "namespace").write_text(case.get("env", {}).get("POD_NAMESPACE", "default"))
    if extras.get("cri"):
        sock = root / "run/containerd/containerd.sock"
        sock.parent.mkdir(parents=True)
        sock.write_text("")  # stands for the socket: detection only checks it exists
    meta = {"env": case.get("env", {}), "cri": bool(extras.get("cri")), "expect": case["expect"]}
    (root / "case.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def main(base: pathlib.Path = HERE) -> None:
    for name, case in CASES.items():
        write_case(name, case, base=base)


if __name__ == "__main__":
    main()
