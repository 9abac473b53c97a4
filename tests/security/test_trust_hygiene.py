"""Issue 10, "Secrets and hygiene" (agent side): secrets stay out of logs and audit, commands
die with their agent or their operator, and no request or output size drops an agent link.

Real processes: a colony and host agents started as `coral colony start` / `coral agent
start`, an operator over gRPC/TLS on loopback, commands found afterwards through /proc.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import uuid

import pytest

from coral_lib import client as client_mod
from coral_lib._proto.coral.agent.v1 import agent_pb2
from tests.support import coral_procs

SECRET = "hunter2"


@pytest.fixture
def fleet(tmp_path):
    """A colony and one host agent; yields (colony, agent)."""
    colony = coral_procs.Colony(tmp_path / "colony").start()
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="hyg-1").start()
    try:
        coral_procs.wait_registered(colony, ["hyg-1"])
        yield colony, agent
    finally:
        agent.stop()
        colony.stop()


def _on(agent_id: str) -> client_mod.Targeting:
    return client_mod.Targeting(agent=agent_id)


def _pids_with(marker: str) -> list[int]:
    """Pids whose command line contains marker (found through /proc, like an operator would)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    if marker.encode() in fh.read():
                        found.append(int(name))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def _finished_status(colony: coral_procs.Colony, audit_id: int) -> str:
    with colony.client() as c:
        started = [r for r in c.audit(kind="started") if r["id"] == audit_id]
        assert started, f"no started record {audit_id}"
        finished = [r for r in c.audit(kind="finished") if r["op_id"] == started[0]["op_id"]]
    return finished[-1]["status"] if finished else ""


def test_review_argv_secrets_never_reach_agent_log_colony_log_or_audit(fleet):
    colony, agent = fleet
    commands = [
        ["echo", "--password", SECRET],
        ["mysql", "-uroot", f"-p{SECRET}", "db"],
        ["echo", f"https://u:{SECRET}@h.example/x"],
        ["env", f"TOKEN={SECRET}", "true"],
        ["echo", f"--api-key={SECRET}"],
        ["curl", "-H", f"Authorization: Bearer {SECRET}x", "http://127.0.0.1:9/"],
    ]
    with colony.client() as c:
        for argv in commands:
            outcome = c.exec(_on("hyg-1"), argv=argv, timeout=10)
            assert len(outcome.results) == 1
        records = list(c.audit_records())
    assert any(r.get("command", "").startswith("echo --password") for r in records)
    assert SECRET not in repr(records)
    assert SECRET not in agent.log(), "the agent log holds an argv secret"
    assert SECRET not in colony.log_path.read_text(), "the colony log holds an argv secret"
    assert "exec echo +2 args via local" in agent.log()


def test_review_command_keeps_running_after_its_agent_dies(fleet):
    colony, agent = fleet
    marker = f"300.{uuid.uuid4().int % 10**9}"
    outcome: dict = {}

    def run() -> None:
        with colony.client() as c:
            outcome["result"] = c.exec(_on("hyg-1"), argv=["sh", "-c", f"sleep {marker} & wait"],
                                       timeout=120).results[0]

    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    coral_procs.wait_for(lambda: _pids_with(f"sleep\0{marker}"), timeout=20,
                         what="the grandchild sleep started")
    pids = _pids_with(f"sleep\0{marker}")
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait()
    coral_procs.wait_for(lambda: not any(_alive(p) for p in pids), timeout=8,
                         what="the command to die with its agent")
    caller.join(30)
    result = outcome["result"]
    assert result["status"] == "interrupted", result
    assert _finished_status(colony, result["audit_id"]) == "interrupted"


def test_review_operator_cancel_kills_the_command_and_audits_interrupted(fleet, tmp_path):
    colony, _agent = fleet
    marker = f"301.{uuid.uuid4().int % 10**9}"
    cli = subprocess.Popen(
        [*coral_procs.CORAL, "exec", "--agent", "hyg-1", "--timeout", "120", "--", "sh", "-c",
         f"sleep {marker} & wait"], env={**os.environ, **colony.operator_env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        coral_procs.wait_for(lambda: _pids_with(f"sleep\0{marker}"), timeout=20,
                             what="the command started")
        pids = _pids_with(f"sleep\0{marker}")
        cli.send_signal(signal.SIGKILL)  # the operator's client goes away mid-command
        cli.wait()
        coral_procs.wait_for(lambda: not any(_alive(p) for p in pids), timeout=10,
                             what="the command to die when its operator went away")
    finally:
        coral_procs.stop_process(cli)

    def interrupted() -> bool:
        with colony.client() as c:
            return any(r.get("status") == "interrupted" for r in c.audit(kind="finished"))
    coral_procs.wait_for(interrupted, timeout=10, what="an interrupted audit record")


def test_timeout_kills_the_commands_grandchildren(fleet):
    colony, _agent = fleet
    marker = f"302.{uuid.uuid4().int % 10**9}"
    with colony.client() as c:
        result = c.exec(_on("hyg-1"), argv=["sh", "-c", f"(sleep {marker}; true) & wait"],
                        timeout=1).results[0]
    assert result["timed_out"] and result["status"] == "timeout"
    coral_procs.wait_for(lambda: not any(_alive(p) for p in _pids_with(f"sleep\0{marker}")),
                         timeout=5, what="the grandchild killed on timeout")


def _link_closes(colony: coral_procs.Colony, agent_id: str) -> int:
    return colony.log_path.read_text().count(f"agent {agent_id} link closed")


def test_review_output_over_the_link_limit_does_not_drop_the_link(fleet):
    """Asking for 300 MB of output per stream once made a reply larger than the link's
    256 MiB message limit: the colony ended the agent's whole link."""
    colony, _agent = fleet
    closes = _link_closes(colony, "hyg-1")
    script = "head -c 140000000 /dev/zero; head -c 140000000 /dev/zero >&2"
    with colony.client() as c:
        big = c.exec(_on("hyg-1"), argv=[script], shell=True, timeout=60,
                     max_output=300_000_000).results[0]
        assert big["status"] == "ok", big["error"]
        assert big["truncated"] and 0 < len(big["stdout"]) < 140_000_000
        after = c.exec(_on("hyg-1"), argv=["echo", "still-linked"], timeout=10).results[0]
    assert after["stdout"] == "still-linked\n"
    assert _link_closes(colony, "hyg-1") == closes, "the agent's link was dropped"


def test_review_four_megabyte_argv_does_not_drop_the_link(fleet):
    colony, _agent = fleet
    closes = _link_closes(colony, "hyg-1")
    with colony.client() as c:
        try:
            big = c.exec(_on("hyg-1"), argv=["echo", "x" * (4 << 20)], timeout=10).results[0]
        except client_mod.CoralError:
            pass  # refused by the colony before it reaches the agent: also fine
        else:
            assert big["status"] == "error" and big["error"], big["status"]
        after = c.exec(_on("hyg-1"), argv=["echo", "still-linked"], timeout=10).results[0]
    assert after["stdout"] == "still-linked\n"
    assert _link_closes(colony, "hyg-1") == closes, "the agent's link was dropped"


def test_review_shell_dies_with_its_agent_and_is_audited_interrupted(fleet):
    colony, agent = fleet
    marker = f"304.{uuid.uuid4().int % 10**9}"
    stop = threading.Event()

    def inputs():
        yield agent_pb2.ShellInput(stdin=f"sleep {marker} &\necho started\n".encode())
        stop.wait(60)

    def run() -> None:
        with colony.client() as c, contextlib.suppress(client_mod.CoralError):
            for _ in c.shell(_on("hyg-1"), inputs=inputs()):
                pass

    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    try:
        coral_procs.wait_for(lambda: _pids_with(f"sleep\0{marker}"), timeout=20,
                             what="the shell's background job started")
        pids = _pids_with(f"sleep\0{marker}")
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait()
        coral_procs.wait_for(lambda: not any(_alive(p) for p in pids), timeout=8,
                             what="the shell's job to die with its agent")
    finally:
        stop.set()
    caller.join(30)

    def interrupted() -> bool:
        with colony.client() as c:
            started = [r for r in c.audit(kind="started") if r.get("verb") == "shell"]
            ended = {r["op_id"]: r["status"] for r in c.audit(kind="finished")}
        return bool(started) and ended.get(started[-1]["op_id"]) == "interrupted"
    coral_procs.wait_for(interrupted, timeout=10, what="the shell audited interrupted")
