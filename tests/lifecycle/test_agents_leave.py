"""Issue 16, "Agents that go away leave": DaemonSet and sidecar agents deregister on
SIGTERM with an audit record; agents unhealthy longer than agentExpiry are expired with an
audit record and their services leave the registry, fan-outs and the inventory (reported as
expired, not "not connected"); `coral agents prune` (admin verb). Real colony and agent
processes over TLS, the API server fixture for the DaemonSet agent's pods and token."""

from __future__ import annotations

import json
import signal

from tests.daemonset.conftest import pod
from tests.support import coral_procs
from tests.support.coral_procs import wait_for


def _agents(colony) -> dict[str, dict]:
    with colony.client() as c:
        return {a["agent_id"]: a for a in c.list_agents()}


def _agent_records(colony, event: str) -> list[dict]:
    with colony.client() as c:
        return [r for r in c.audit(kind="agent") if r["event"] == event]


def _exec_agent(colony, agent_id: str) -> str:
    run = coral_procs.coral("exec", "--agent", agent_id, "--", "true", env=colony.operator_env)
    assert run.returncode != 0
    return run.stderr


def test_daemonset_agent_deregisters_on_sigterm_when_its_node_is_removed(
        kubeapi, colony, node_agents):
    """Decision: no preStop hook; the agent acts on SIGTERM (which kubelet sends anyway) and
    asks the API server whether its node is going away."""
    kubeapi.store.create(pod("web"))
    agent = node_agents("node-a")
    coral_procs.wait_registered(colony, [agent.agent_id])
    wait_for(lambda: _agents(colony)[agent.agent_id]["service_count"] == 1, timeout=20,
             what="pod web registered")
    kubeapi.store.delete("nodes", "node-a")
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(15) == 0, agent.log()[-2000:]
    assert agent.agent_id not in _agents(colony)
    with colony.client() as c:
        assert c.list_services(agent=agent.agent_id) == []
    (record,) = _agent_records(colony, "deregistered")
    assert (record["agent_id"], record["by"], record["node"]) == (
        agent.agent_id, f"agent:{agent.agent_id}", "node-a")
    assert "deregistered" in _exec_agent(colony, agent.agent_id)


def test_daemonset_agent_rollout_keeps_its_node_registered(kubeapi, colony, node_agents):
    """A SIGTERM while the node stays (a DaemonSet rollout, a restart) is not a departure:
    the node's services are neither dropped nor re-added."""
    kubeapi.store.create(pod("web"))
    agent = node_agents("node-a")
    coral_procs.wait_registered(colony, [agent.agent_id])
    wait_for(lambda: _agents(colony)[agent.agent_id]["service_count"] == 1, timeout=20,
             what="pod web registered")
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(15) == 0, agent.log()[-2000:]
    assert _agents(colony)[agent.agent_id]["service_count"] == 1
    assert _agent_records(colony, "deregistered") == []


def test_agent_unhealthy_longer_than_agent_expiry_is_expired_with_its_services(
        tmp_path, colony):
    """A host agent killed without a word (SIGKILL: a removed node, a crashed VM)."""
    gone = coral_procs.Agent(tmp_path / "agents", colony, agent_id="vm-gone", services=[
        {"name": "billing", "port": 18090}]).start()
    stays = coral_procs.Agent(tmp_path / "agents", colony, agent_id="vm-stays", services=[
        {"name": "billing", "port": 18091}]).start()
    try:
        coral_procs.wait_registered(colony, ["vm-gone", "vm-stays"])
        gone.proc.send_signal(signal.SIGKILL)
        gone.proc.wait(10)
        wait_for(lambda: "vm-gone" not in _agents(colony), timeout=30, what="vm-gone expired")
        (record,) = _agent_records(colony, "expired")
        assert (record["agent_id"], record["by"], record["agent_expiry"]) == (
            "vm-gone", "colony", 4.0)
        with colony.client() as c:
            assert {s["agent"] for s in c.list_services(name="billing")} == {"vm-stays"}
        # a fan-out no longer includes it; naming it says it expired, not "not connected"
        run = coral_procs.coral("exec", "--service", "billing", "-o", "json", "--", "true",
                                env=colony.operator_env)
        assert [r["agent"] for r in json.loads(run.stdout)["results"]] == ["vm-stays"]
        message = _exec_agent(colony, "vm-gone")
        assert "expired" in message and "not connected" not in message, message
        assert "vm-stays" in _agents(colony)  # a connected agent is never expired
    finally:
        stays.stop()
        gone.stop()


def test_an_expired_agent_that_comes_back_registers_again(tmp_path, colony):
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="vm-back").start()
    coral_procs.wait_registered(colony, ["vm-back"])
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(10)
    wait_for(lambda: "vm-back" not in _agents(colony), timeout=30, what="vm-back expired")
    agent.start()  # its certificate is still valid: it simply registers again
    try:
        coral_procs.wait_registered(colony, ["vm-back"])
        run = coral_procs.coral("exec", "--agent", "vm-back", "--", "true",
                                env=colony.operator_env)
        assert run.returncode == 0, run.stderr
    finally:
        agent.stop()
