"""Issue 6 acceptance (trace, where bcc works): `coral trace exec` streams exec events as
JSON lines from a host agent; the agent handler scopes a target to its PID namespace; the
runtime context reports can_trace truthfully."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib.agent import handlers
from coral_lib.ops import base, local
from tests.support import coral_procs


def _keep_running(argv, stop: threading.Event) -> threading.Thread:
    def loop():
        while not stop.is_set():
            subprocess.run(argv, check=False)
            time.sleep(0.2)
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_trace_exec_through_cli_streams_json_lines(bcc_works, probe, tmp_path, colony):
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="tracer-1").start()
    stop = threading.Event()
    try:
        coral_procs.wait_registered(colony, ["tracer-1"])
        with colony.client() as c:
            ctx = c.list_agents()[0]["runtime"]
            assert ctx["can_trace"]["available"] is True
        _keep_running([str(probe)], stop)
        run = coral_procs.coral("trace", "exec", "--agent", "tracer-1", "--duration", "3s",
                                env=colony.operator_env, timeout=200)
        assert run.returncode == 0, run.stderr
        events = [json.loads(line) for line in run.stdout.splitlines()]
        mine = [e for e in events if e.get("filename") == str(probe)]
        assert mine and all(e["target"] == "tracer-1" and e["type"] == "exec" for e in mine)
        assert "tracer-1:" in run.stderr and "ended by duration" in run.stderr
        with colony.client() as c:
            started = [r for r in c.audit(kind="started") if r["verb"] == "trace"]
            assert started and started[0]["command"].startswith("trace exec")
    finally:
        stop.set()
        agent.stop()


def test_trace_handler_scopes_to_the_target_pid_namespace(bcc_works, probe):
    """A target process in its own PID namespace: its execs are traced, the host's not."""
    inner = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "sh", "-c",
                              f"while :; do {probe} inside; sleep 0.2; done"])
    stop = threading.Event()
    try:
        time.sleep(0.3)
        child = int(subprocess.run(["pgrep", "-P", str(inner.pid)], capture_output=True,
                                   text=True).stdout.split()[0])

        def resolve(request: base.ExecRequest):
            target = base.ExecTarget(pid=child)
            return local.LocalBackend(), base.ExecRequest(argv=request.argv, target=target)

        ctx = agent_pb2.RuntimeContext(can_trace=agent_pb2.Capability(available=True))
        h = handlers.Handlers(runtime=ctx, resolve=resolve)
        _keep_running([str(probe), "outside"], stop)
        seen: list[dict] = []
        h.trace(agent_pb2.TraceRequest(kind="exec", duration_seconds=2), on_event=seen.append,
                stop=threading.Event())
        mine = [e for e in seen if e.get("filename") == str(probe)]
        assert mine, seen[:5]
        assert all(e["ns_pid"] and e["pid"] != e["ns_pid"] for e in mine)
        pidns = os.stat(f"/proc/{child}/ns/pid").st_ino
        assert pidns != os.stat("/proc/self/ns/pid").st_ino
    finally:
        stop.set()
        inner.kill()
        inner.wait()
