"""eBPF tracing (issue 6, "Trace" acceptance): runs where bcc works, skips with the reason."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from coral_lib.ops import base, trace


def _in_cgroup(cgroup: str, argv: str) -> None:
    """Run argv (a shell word list) as a process that first joins the cgroup."""
    subprocess.run(["/bin/sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec {argv}'],
                   check=True, timeout=30)


def _filenames(events: list[dict]) -> set[str]:
    return {e["filename"] for e in events}


def test_trace_exec_sees_target_cgroup_and_below_not_others(bcc, cgroup_dir, markers,
                                                            start_trace):
    """Acceptance: exec events of processes started in the target cgroup (and a cgroup
    below it) are seen; an exec outside it, at the same time, is not."""
    inside, nested, outside = markers("in"), markers("nested"), markers("out")
    os.mkdir(f"{cgroup_dir}/sub")
    tracing = start_trace("exec", cgroup_path=cgroup_dir, pidns_inode=None, duration=60)
    subprocess.run([outside], check=True)
    _in_cgroup(cgroup_dir, inside)
    _in_cgroup(f"{cgroup_dir}/sub", nested)
    subprocess.run([outside], check=True)
    tracing.wait_for(lambda evs: {inside, nested} <= _filenames(evs))
    summary = tracing.finish()
    names = _filenames(tracing.events)
    assert {inside, nested} <= names
    assert outside not in names
    ids = {os.stat(cgroup_dir).st_ino, os.stat(f"{cgroup_dir}/sub").st_ino}
    assert {e["cgroup_id"] for e in tracing.events} <= ids
    assert summary.reason == "stopped" and summary.events == len(tracing.events)


def test_trace_exec_scoped_to_pid_namespace(bcc, markers, start_trace):
    inside, outside = markers("pidns"), markers("host")
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "/bin/sh", "-c",
                             f"read go; exec {inside}"], stdin=subprocess.PIPE)
    try:
        inode = _pid_for_children(proc.pid)
        tracing = start_trace("exec", cgroup_path=None, pidns_inode=inode, duration=60)
        proc.communicate(b"go\n", timeout=30)
        subprocess.run([outside], check=True)
        tracing.wait_for(lambda evs: inside in _filenames(evs))
        tracing.finish()
    finally:
        proc.kill()
        proc.wait()
    seen = {e["filename"]: e for e in tracing.events}
    assert inside in seen and outside not in seen
    assert seen[inside]["ns_pid"] == 1  # the shell is PID 1 of its new namespace


def _pid_for_children(pid: int) -> int:
    """Inode of the PID namespace unshare(1) made for its child, once it has made it."""
    own = os.stat("/proc/self/ns/pid").st_ino
    for _ in range(200):
        inode = os.stat(f"/proc/{pid}/ns/pid_for_children").st_ino
        if inode != own:
            return inode
        time.sleep(0.02)
    raise AssertionError("unshare did not create a PID namespace")


def test_trace_connect_sees_target_cgroup_only(bcc, cgroup_dir, start_trace):
    with socket.create_server(("127.0.0.1", 0)) as wanted, \
            socket.create_server(("127.0.0.1", 0)) as other:
        port, other_port = wanted.getsockname()[1], other.getsockname()[1]
        tracing = start_trace("connect", cgroup_path=cgroup_dir, pidns_inode=None,
                              duration=60)
        socket.create_connection(("127.0.0.1", other_port)).close()
        client = f"import socket; socket.create_connection(('127.0.0.1', {port})).close()"
        _in_cgroup(cgroup_dir, f'/usr/bin/python3 -c "{client}"')
        tracing.wait_for(lambda evs: any(e["port"] == port for e in evs))
        tracing.finish()
    targets = {(e["family"], e["addr"], e["port"]) for e in tracing.events}
    assert ("inet", "127.0.0.1", port) in targets
    assert all(p != other_port for _, _, p in targets)


def test_trace_max_events_and_duration_end_the_trace(bcc, cgroup_dir, markers, start_trace):
    marker = markers("limit")
    tracing = start_trace("exec", cgroup_path=cgroup_dir, pidns_inode=None, duration=60,
                          max_events=2)
    for _ in range(4):
        _in_cgroup(cgroup_dir, marker)
    summary = tracing.join()
    assert (summary.reason, summary.events, len(tracing.events)) == ("max_events", 2, 2)
    quiet = start_trace("exec", cgroup_path=cgroup_dir, pidns_inode=None, duration=0.5)
    assert quiet.join().reason == "duration"


@pytest.mark.parametrize("kwargs, named", [
    ({"kind": "open"}, "'open'"),
    ({"duration": 0}, "duration 0"),
    ({"max_events": 0}, "max_events 0"),
    ({"cgroup_path": "/no-such-cgroup-coral"}, "/no-such-cgroup-coral"),
    ({"cgroup_path": "/a/../b"}, "'..'"),
    ({"pidns_inode": -5}, "-5"),
])
def test_trace_bad_input_error_names_it(kwargs, named):
    args = {"kind": "exec", "cgroup_path": None, "pidns_inode": None, "duration": 1.0} | kwargs
    with pytest.raises(base.OperationError, match=named.replace("(", r"\(")):
        trace.run(args.pop("kind"), on_event=lambda e: None, **args)


def test_trace_available_reason_is_precise():
    ok, reason = trace.available()
    assert ok == (reason == "")
    assert ok or reason.startswith("eBPF tracing is not available here because ")


def test_trace_cgroup_path_forms():
    mountinfo = ("35 24 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n"
                 "36 24 0:31 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")
    mount = trace.cgroup2_mount(mountinfo)
    assert mount == "/sys/fs/cgroup/unified"
    # The /proc/PID/cgroup "0::" form and the directory form name the same cgroup.
    assert trace.cgroup_scope("/k8s.io/abc", mount=mount) == (f"{mount}/k8s.io/abc", 2)
    assert trace.cgroup_scope(f"{mount}/k8s.io/abc", mount=mount) == (f"{mount}/k8s.io/abc", 2)
    assert trace.cgroup_scope("/", mount=mount) == (mount, 0)
    assert trace.cgroup2_mount("36 24 0:31 / /x rw - cgroup cgroup rw\n") is None


def test_trace_cflags_encode_scope():
    flags = trace.build_cflags(kind="connect", cgroup=(77, 3), pidns=None)
    assert "-DKIND_EXEC=0" in flags and "-DCGROUP_ID=77ULL" in flags
    assert "-DCGROUP_LEVEL=3" in flags and "-DPIDNS_INO=0ULL" in flags
    assert "-DCGROUP_LEVEL=-1" in trace.build_cflags(kind="exec", cgroup=None, pidns=(5, 9))


def test_trace_unavailable_reason_names_missing_package(monkeypatch):
    """Where bcc is missing the answer says so (this is what the capability report shows)."""
    monkeypatch.setattr(trace, "BCC_PACKAGE", "/nonexistent/bcc/__init__.py")
    ok, reason = trace.available()
    assert not ok
    assert "python3-bpfcc" in reason or "root" in reason
    with pytest.raises(base.OperationError, match="not available here because"):
        trace.run("exec", cgroup_path=None, pidns_inode=None, duration=1.0,
                  on_event=lambda e: None)


_PROBE_CHILD = """
import sys
started = []
def hook(event, args):
    if event in ("subprocess.Popen", "os.posix_spawn", "os.fork", "os.exec", "os.system"):
        started.append(event)
sys.addaudithook(hook)
from coral_lib.ops import trace
ok, reason = trace.available()
import json
print(json.dumps({"ok": ok, "started": started, "bcc": "bcc" in sys.modules}))
"""


def test_trace_probe_starts_no_process_and_does_not_import_bcc():
    """Issue 15, a leaner agent: the capability check an agent runs at start only looks at
    files. It used to import bcc in a child of the agent, which maps LLVM and clang and reads
    ~175 MB into the agent cgroup's page cache on every start, traced or not."""
    out = subprocess.run([sys.executable, "-c", _PROBE_CHILD], capture_output=True, text=True,
                         check=True, timeout=60)
    probe = json.loads(out.stdout)
    assert probe["started"] == [], f"the probe started processes: {probe['started']}"
    assert probe["bcc"] is False


def test_trace_unavailable_reason_names_missing_bcc_library(monkeypatch):
    """With the Python package but not the shared library bcc loads, the reason names it."""
    monkeypatch.setattr(trace, "BCC_LIBRARY", "libbcc-absent.so.0")
    ok, reason = trace.available()
    assert not ok
    if os.geteuid() == 0 and os.path.exists(trace.BCC_PACKAGE) \
            and os.access(trace.SYSTEM_PYTHON, os.X_OK):
        assert "libbcc-absent.so.0" in reason and "libbpfcc" in reason


def test_trace_reports_bcc_that_does_not_import(bcc, monkeypatch):
    """The import the probe no longer makes happens when a trace is requested: a bcc that
    is present on disk but does not import fails that trace with the tracer's own error.
    Shortcut, named: the interpreter that cannot import bcc is this test's venv Python
    standing in for a system Python with a broken bcc."""
    probe = subprocess.run([sys.executable, "-c", "import bcc"], capture_output=True,
                           check=False)
    if probe.returncode == 0:
        pytest.skip("this interpreter imports bcc; it cannot stand in for a broken one")
    monkeypatch.setattr(trace, "SYSTEM_PYTHON", sys.executable)
    with pytest.raises(base.OperationError, match="could not load its BPF program.*bcc"):
        trace.run("exec", cgroup_path=None, pidns_inode=None, duration=1.0,
                  on_event=lambda e: None)
