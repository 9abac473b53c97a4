"""eBPF tracing (bcc, tracepoints only) of exec and connect events, scoped to a target.

bcc is Debian's python3-bpfcc, importable only by the system interpreter, so the tracer
runs as a `/usr/bin/python3` subprocess that prints one JSON object per line. Scope is
decided in the kernel: the cgroup v2 id of the task (the target cgroup or any cgroup
below it, via bpf_get_current_ancestor_cgroup_id) and/or its PID namespace (via
bpf_get_ns_current_pid_tgid). Both avoid reading kernel structs, which matters here:
the installed headers are a distribution kernel's, not the running one's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import selectors
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable

from coral_lib.ops import base, procgroup

SYSTEM_PYTHON = "/usr/bin/python3"
BCC_PACKAGE = "/usr/lib/python3/dist-packages/bcc/__init__.py"
BCC_LIBRARY = "libbcc.so.0"  # what bcc/libbcc.py loads with ctypes
TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
KINDS = {"exec": "sched/sched_process_exec", "connect": "syscalls/sys_enter_connect"}
LOAD_TIMEOUT = 120.0  # compiling the program with clang takes seconds on a busy machine
MAX_DURATION = 24 * 3600.0

# The BPF C program and the tracer script are package data: coral_lib/ops/programs/.


@dataclasses.dataclass(frozen=True)
class TraceSummary:
    events: int
    lost: int  # events the kernel could not hand over (perf buffer full)
    reason: str  # duration | max_events | stopped


def available() -> tuple[bool, str]:
    """(True, "") when tracepoint programs can load here, else (False, the precise reason).

    Only files are looked at: importing bcc maps LLVM and clang (~175 MB read, and charged
    to the agent's cgroup as page cache) and an agent checks this at start, where most never
    trace. A bcc that is installed but fails to load is reported by the trace that needs
    it (the tracer's error output)."""
    reason = _missing_piece()
    return (not reason, reason and f"eBPF tracing is not available here because {reason}")


def _missing_piece() -> str:
    if os.geteuid() != 0:
        return "the agent does not run as root (loading BPF programs needs it)"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing (bcc is used through the system interpreter)"
    if not os.path.exists(BCC_PACKAGE):
        return "bcc is not installed (Debian package python3-bpfcc)"
    if bcc_library() is None:
        return (f"the bcc library {BCC_LIBRARY} is missing from {', '.join(library_dirs())} "
                "(Debian package libbpfcc)")
    build = f"/lib/modules/{os.uname().release}/build"
    if not os.path.isdir(build):
        return (f"kernel headers are missing: {build} does not exist "
                "(install linux-headers-amd64 and link it, see tools/setup_bcc.sh)")
    if tracefs() is None:
        return "tracefs is not mounted (mount -t tracefs none /sys/kernel/tracing)"
    return ""


def library_dirs() -> tuple[str, ...]:
    """Where the system's dynamic loader finds libbcc (Debian multiarch first)."""
    return (f"/usr/lib/{os.uname().machine}-linux-gnu", f"/lib/{os.uname().machine}-linux-gnu",
            "/usr/lib64", "/usr/lib")


def bcc_library() -> str | None:
    return next((path for d in library_dirs()
                 if os.path.exists(path := os.path.join(d, BCC_LIBRARY))), None)


def tracefs() -> str | None:
    return next((p for p in TRACEFS if os.path.isdir(f"{p}/events")), None)


def cgroup2_mount(mountinfo: str) -> str | None:
    """Mount point of the cgroup v2 hierarchy in a /proc/self/mountinfo text."""
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if sep and right.split()[0] == "cgroup2":
            return left.split()[4]
    return None


def cgroup_scope(path: str, *, mount: str) -> tuple[str, int]:
    """(directory, level below the v2 root) for a v2 directory or a /proc/PID/cgroup path."""
    if path == mount or path.startswith(mount.rstrip("/") + "/"):
        rel = path[len(mount):]
    else:
        rel = path
    parts = [p for p in rel.split("/") if p]
    if ".." in parts:
        raise base.OperationError(f"trace cgroup path {path!r} must not contain '..'")
    return os.path.join(mount, *parts), len(parts)


def build_cflags(*, kind: str, cgroup: tuple[int, int] | None,
                 pidns: tuple[int, int] | None) -> list[str]:
    """cgroup is (id, level), pidns is (nsfs device, inode); None means not scoped by it."""
    cg_id, cg_level = cgroup or (0, -1)
    ns_dev, ns_ino = pidns or (0, 0)
    return [f"-DKIND_EXEC={int(kind == 'exec')}", f"-DCGROUP_ID={cg_id}ULL",
            f"-DCGROUP_LEVEL={cg_level}", f"-DPIDNS_DEV={ns_dev}ULL", f"-DPIDNS_INO={ns_ino}ULL"]


def run(
    kind: str,
    *,
    cgroup_path: str | None,
    pidns_inode: int | None,
    duration: float,
    on_event: Callable[[dict], None],
    max_events: int = 10000,
    stop: threading.Event | None = None,
    on_ready: Callable[[], None] | None = None,
) -> TraceSummary:
    """Trace `kind` events in the scope for `duration` seconds (counted once attached).

    cgroup_path: a cgroup v2 directory or the path from a `0::` line of /proc/PID/cgroup;
    events of that cgroup and every cgroup below it. pidns_inode: only tasks of that PID
    namespace (events then carry ns_pid). Both None traces the whole host.
    """
    cflags = _checked_cflags(kind, cgroup_path=cgroup_path, pidns_inode=pidns_inode,
                             duration=duration, max_events=max_events)
    ok, reason = available()
    if not ok:
        raise base.OperationError(reason)
    config = {"text": base.program_text("trace.bpf.c"), "cflags": cflags, "kind": kind,
              "duration": duration, "pidns": pidns_inode is not None}
    with tempfile.TemporaryFile() as errfile:
        tracer = base.program_text("tracer.py")
        proc = subprocess.Popen([SYSTEM_PYTHON, "-c", tracer, json.dumps(config)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=errfile, start_new_session=True)
        procgroup.watch(proc.pid)  # the tracer dies with the agent
        try:
            return _follow(proc, duration=duration, max_events=max_events, on_event=on_event,
                           stop=stop or threading.Event(), on_ready=on_ready, errfile=errfile)
        finally:
            _end(proc)
            procgroup.unwatch(proc.pid)


def _checked_cflags(kind, *, cgroup_path, pidns_inode, duration, max_events) -> list[str]:
    if kind not in KINDS:
        raise base.OperationError(f"trace kind {kind!r} is not one of {', '.join(KINDS)}")
    if not 0 < duration <= MAX_DURATION:
        raise base.OperationError(f"trace duration {duration!r} must be > 0 and at most "
                                  f"{MAX_DURATION:.0f} seconds")
    if max_events < 1:
        raise base.OperationError(f"trace max_events {max_events!r} must be at least 1")
    cgroup = _cgroup_id(cgroup_path) if cgroup_path is not None else None
    pidns = None
    if pidns_inode is not None:
        if pidns_inode < 1:
            raise base.OperationError(f"trace pidns_inode {pidns_inode!r} is not an inode")
        pidns = (os.stat("/proc/self/ns/pid").st_dev, pidns_inode)  # nsfs: one device
    return build_cflags(kind=kind, cgroup=cgroup, pidns=pidns)


def _cgroup_id(path: str) -> tuple[int, int]:
    with open("/proc/self/mountinfo") as f:
        mount = cgroup2_mount(f.read())
    if mount is None:
        raise base.OperationError("trace by cgroup needs a cgroup v2 mount; none is mounted")
    directory, level = cgroup_scope(path, mount=mount)
    try:
        return os.stat(directory).st_ino, level  # a v2 cgroup's id is its inode number
    except OSError as exc:
        raise base.OperationError(f"trace cgroup {path!r}: {directory} is not a cgroup "
                                  f"({exc.strerror})") from exc


def _follow(proc, *, duration, max_events, on_event, stop, on_ready, errfile) -> TraceSummary:
    events, ready = 0, False
    deadline = [time.monotonic() + LOAD_TIMEOUT]  # moved on once the program is attached
    for msg in _lines(proc, deadline=deadline, stop=stop):
        if msg.get("type") == "ready":
            ready, deadline[0] = True, time.monotonic() + duration + 10
            if on_ready:
                on_ready()
        elif msg.get("type") == "end":
            return TraceSummary(events=events, lost=msg.get("lost", 0), reason=msg["reason"])
        elif msg.get("type") in KINDS:
            on_event(msg)
            events += 1
            if events >= max_events:
                return TraceSummary(events=events, lost=0, reason="max_events")
    if stop.is_set():
        return TraceSummary(events=events, lost=0, reason="stopped")
    raise base.OperationError(_failure(ready=ready, errfile=errfile))


def _lines(proc, *, deadline: list[float], stop):
    """JSON objects from the tracer's stdout until EOF, the deadline or stop (SIGTERM)."""
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline[0]:
            if stop.is_set():
                _signal(proc, signal.SIGTERM)
            if not sel.select(timeout=0.2):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                return
            *lines, buf = (buf + chunk).split(b"\n")
            for line in lines:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue  # not ours (a library printing to stdout): ignore


def _failure(*, ready: bool, errfile) -> str:
    errfile.seek(0)
    tail = errfile.read()[-2000:].decode(errors="replace").strip().splitlines()[-5:]
    what = "stopped unexpectedly" if ready else "could not load its BPF program"
    return f"the eBPF tracer {what}: " + (" | ".join(tail) or "no error output")


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        _signal(proc, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            proc.wait()
    proc.stdout.close()
