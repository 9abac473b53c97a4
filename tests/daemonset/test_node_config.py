"""Issue 16, "DaemonSet configuration": `--mode=passive` accepted; `CORAL_CRI_SOCKET`
honoured (an unusable socket is an error, not a silent nsenter fallback);
`discovery.kubernetes.pollInterval` used; intervals of 0 refused with a clear config error.
Real `coral agent node` processes against the API server fixture and a real colony."""

from __future__ import annotations

import pytest
import yaml

from coral_lib import config
from coral_lib.agent import node
from tests.daemonset.test_cri_exec import runtime  # noqa: F401
from tests.support import coral_procs


def _exit(agent) -> tuple[int, str]:
    return agent.proc.wait(30), agent.log()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_unusable_cri_socket_is_an_error_not_an_nsenter_fallback(
        kubeapi, colony, node_agents, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("CORAL_CRI_SOCKET", "/nonexistent/cri.sock")
    agent = node_agents("node-a", flags=["--cri-socket", "/nonexistent/cri.sock"]
                        if how == "flag" else [])
    code, log = _exit(agent)
    assert code == 2, log
    assert "no CRI runtime answers on /nonexistent/cri.sock" in log, log


def test_cri_socket_from_the_environment_is_used(
        kubeapi, colony, node_agents, runtime, monkeypatch):  # noqa: F811
    """The DaemonSet manifest sets CORAL_CRI_SOCKET (coral_lib/manifests/daemonset.py)."""
    monkeypatch.setenv("CORAL_CRI_SOCKET", runtime.socket)
    node_agents("node-a", flags=["--mode=passive"])  # the seed's flag is accepted
    coral_procs.wait_registered(colony, ["node-node-a"])
    with colony.client() as c:
        (agent,) = c.list_agents()
    assert agent["runtime"]["exec_backend"] == "cri"


def test_zero_interval_is_refused_with_a_config_error(kubeapi, colony, node_agents):
    agent = node_agents("node-a", extra={"discovery": {"kubernetes": {"pollInterval": "0s"}}})
    code, log = _exit(agent)
    assert code == 2, log
    assert "discovery.kubernetes.pollInterval" in log and "above zero" in log, log


def test_kubernetes_poll_interval_is_the_daemonset_agents_discovery_period(tmp_path):
    body = {"agent": {"id": "node-node-a"},
            "discovery": {"kubernetes": {"pollInterval": "7s"}, "host": {"pollInterval": "2s"}}}
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(body))
    cfg = config.load_agent_config(str(path), environ={})
    agent = node.build(cfg, node.NodeOptions(node_name="node-a", cri_socket=""),
                       state_dir=tmp_path, api=object())
    assert agent.poll_interval() == 7.0
