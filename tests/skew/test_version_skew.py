"""Issue 13, "Version skew": the previous release's agent (built from git) works against the
new colony and the new agent against the previous colony, within the skew policy the README
states (colony first, agents one release behind; a rollback of the colony keeps new agents
working); the registry and audit databases of the previous release migrate forward and the
audit chain still verifies. Agents from before per-agent identity (a shared colony secret)
are refused with a message that says what to do.

Every "previous" process runs the wheel built from tests/skew/PREVIOUS_RELEASE.
"""

from __future__ import annotations

import json
import subprocess

import grpc
import pytest

from coral_lib import client
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from tests.skew.conftest import Release
from tests.support import agent_identity, coral_procs


def _exec_ok(colony: coral_procs.Colony, agent_id: str, word: str) -> dict:
    with colony.client() as c:
        out = c.exec(client.Targeting(agent=agent_id), argv=["echo", word])
    result = out.results[0]
    assert result["status"] == "ok", result
    assert result["stdout"].strip() == word
    return result


def _runs_the_old_code(release: Release, proc: subprocess.Popen) -> None:
    """The process really is the previous release's build (not this tree)."""
    cmdline = open(f"/proc/{proc.pid}/cmdline", "rb").read().split(b"\0")
    assert release.command[0].encode() in cmdline[:2], cmdline
    environ = open(f"/proc/{proc.pid}/environ", "rb").read().split(b"\0")
    assert not [e for e in environ if e.startswith(b"PYTHONPATH=")]


def test_previous_release_builds_from_git(previous: Release) -> None:
    where = subprocess.run(
        [previous.command[0].replace("/coral", "/python"), "-c",
         "import coral_lib; print(coral_lib.__file__)"],
        capture_output=True, text=True, env=previous.env, cwd="/", check=True).stdout
    assert "/previous-release" in where and "site-packages/coral_lib" in where


def test_previous_release_agent_works_with_new_colony(previous: Release, tmp_path) -> None:
    colony = coral_procs.Colony(tmp_path / "colony").start()
    agent = previous.agent(tmp_path / "agents", colony, agent_id="old-agent-1").start()
    try:
        coral_procs.wait_registered(colony, ["old-agent-1"])
        _runs_the_old_code(previous, agent.proc)
        _exec_ok(colony, "old-agent-1", "old-agent-new-colony")
        with colony.client() as c:
            assert c.list_services(agent="old-agent-1"), "the old agent's services registered"
            assert c.verify_audit()["ok"]
    finally:
        agent.stop()
        colony.stop()


def test_new_agent_works_with_previous_release_colony(previous: Release, tmp_path) -> None:
    """A colony rolled back to the previous release keeps the new agents working."""
    colony = previous.colony(tmp_path / "colony").start()
    try:
        _runs_the_old_code(previous, colony.proc)
        made = previous.coral("colony", "join-token", "create", "--agent-id", "new-agent-1",
                              env=colony.operator_env)
        assert made.returncode == 0, made.stderr
        agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="new-agent-1",
                                  join_token=made.stdout.strip()).start()
        try:
            coral_procs.wait_registered(colony, ["new-agent-1"])
            _exec_ok(colony, "new-agent-1", "new-agent-old-colony")
        finally:
            agent.stop()
    finally:
        colony.stop()


def test_previous_release_databases_migrate_forward(previous: Release, tmp_path) -> None:
    """The previous colony writes its registry, identities and audit log (with checkpoints);
    the new colony opens the same data directory, the old agent reconnects with the
    certificate it already holds, and the audit chain verifies locally and through the
    colony, old records and new."""
    sink = tmp_path / "checkpoints"
    config = tmp_path / "colony.yaml"
    config.write_text(f"checkpointDir: {sink}\ncheckpointSyslog: ''\ncheckpointEvery: 2\n")
    old = previous.colony(tmp_path / "colony", args=("--config", str(config))).start()
    agent = previous.agent(tmp_path / "agents", old, agent_id="kept-1").start()
    try:
        coral_procs.wait_registered(old, ["kept-1"])
        for i in range(3):
            _exec_ok(old, "kept-1", f"before-upgrade-{i}")
    finally:
        agent.stop()
        old.stop()
    assert old.proc.returncode == 0
    before = _local_verify(tmp_path / "colony", sink)
    assert before["ok"], before
    new = coral_procs.Colony(tmp_path / "colony", port=old.port,
                             args=("--config", str(config))).start()
    agent = previous.agent(tmp_path / "agents", new, agent_id="kept-1").start()  # same cert
    try:
        with new.client() as c:
            assert any(a["agent_id"] == "kept-1" for a in c.list_agents()), "registry kept"
        coral_procs.wait_registered(new, ["kept-1"])
        _exec_ok(new, "kept-1", "after-upgrade")
        with new.client() as c:
            verified = c.verify_audit()
            assert verified["ok"], verified
            records = c.audit(limit=10_000)
        assert any("before-upgrade-0" in json.dumps(r) for r in records)
        assert any("after-upgrade" in json.dumps(r) for r in records)
    finally:
        agent.stop()
        new.stop()
    after = _local_verify(tmp_path / "colony", sink)
    assert after["ok"] and after["checked"] > before["checked"], after


def _local_verify(data_dir, sink) -> dict:
    run = coral_procs.coral("audit", "verify", "--checkpoints", str(sink), "--data-dir",
                            str(data_dir))
    assert run.returncode in (0, 1), run.stderr
    return json.loads(run.stdout)


def test_shared_secret_agent_is_refused_clearly(tmp_path) -> None:
    """What an agent from before per-agent identity sent: Register with the colony's shared
    secret and no certificate. Refused UNAUTHENTICATED, the message says what to do."""
    colony = coral_procs.Colony(tmp_path / "colony").start()
    try:
        chan, stub = agent_identity.bare_stub(colony)
        with pytest.raises(grpc.RpcError) as info:
            stub.Register(mesh_pb2.RegisterRequest(
                agent_id="legacy-1", colony_id=colony.colony_id,
                colony_secret="the-old-shared-secret"), timeout=10)
        chan.close()
    finally:
        colony.stop()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "shared colony secret" in info.value.details()
    assert "join token" in info.value.details()


