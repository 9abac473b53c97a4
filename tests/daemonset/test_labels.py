"""Issue 16, "Labels": a DaemonSet agent carries its node's labels (read from its Node in the
API) and the agent labels its config gives (`agent.labels`); both reach the registry
(RegisterRequest.labels / node_labels were always empty) and selectors match them, for
pods with and without a service. Real colony and `coral agent node` processes, the API
server fixture."""

from __future__ import annotations

from coral_lib import client
from tests.daemonset.conftest import pod
from tests.support import coral_procs
from tests.support.coral_procs import wait_for


def test_daemonset_agent_carries_node_labels_and_configured_agent_labels(
        kubeapi, colony, node_agents):
    kubeapi.store.create(pod("web"))
    kubeapi.store.create(pod("batch", containers=[
        {"name": "job", "image": "docker.io/local/busybox"}], phase="Running"))
    node_agents("node-a", extra={"agent": {"id": "node-node-a", "runtime": "daemonset",
                                           "labels": {"team": "core", "env": "prod"}}})
    node_agents("node-b")
    coral_procs.wait_registered(colony, ["node-node-a", "node-node-b"])
    with colony.client() as c:
        agents = {a["agent_id"]: a for a in c.list_agents()}
    assert agents["node-node-a"]["labels"] == {"team": "core", "env": "prod"}
    assert agents["node-node-a"]["node_labels"]["kubernetes.io/hostname"] == "node-a"
    assert agents["node-node-b"]["labels"] == {}

    def selected(**selector) -> list[tuple[str, str]]:
        with colony.client() as c:
            return sorted((t["agent"], t.get("pod", "")) for t in c.resolve(
                client.Targeting(selector=selector)))
    # node-a's pods (batch has no service; the agent's own pod is one of them too)
    wait_for(lambda: {("node-node-a", "batch"), ("node-node-a", "web")} <= set(
        selected(team="core")), timeout=30, what="node-a's pods selected by the agent label")
    assert {a for a, _ in selected(team="core")} == {"node-node-a"}
    assert selected(**{"kubernetes.io/hostname": "node-a"}) == selected(team="core")
