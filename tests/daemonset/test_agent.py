"""DaemonSet agent processes against the API server fixture and a real colony process
(issue 4 "Garbage collection", "Many agents", override log lines)."""

from __future__ import annotations

import json

from coral_lib.colony import discovery_record
from tests.daemonset.conftest import added_counts, pod, registry
from tests.support import coral_procs
from tests.support.coral_procs import wait_for


def _pods_in_registry(colony, **filters) -> set[str]:
    return {s["pod_name"] for s in registry(colony, **filters)}


def test_pod_events_reach_the_registry_and_finished_or_deleted_pods_leave(
        kubeapi, colony, node_agents):
    """Deleted pod and phase Succeeded/Failed leave the colony registry within one watch
    event; the overridden service gets one structured log line naming the winning source."""
    for name in ("a", "b", "c", "d"):
        kubeapi.store.create(pod(name))
    kubeapi.store.create(pod("annotated", annotations={"coral.io/service-type": "grpc"}))
    agent = node_agents("node-a")
    wait_for(lambda: _pods_in_registry(colony) == {"a", "b", "c", "d", "annotated"},
             timeout=30, what="five pods registered")
    rows = {s["pod_name"]: s for s in registry(colony)}
    assert rows["a"]["provenance"] == "discovered" and rows["a"]["node_name"] == "node-a"
    assert rows["a"]["node_labels"]["kubernetes.io/hostname"] == "node-a"
    assert rows["annotated"]["provenance"] == "overridden"
    assert rows["annotated"]["sources"] == {"service_type": "annotation"}

    kubeapi.store.delete("pods", "a", namespace="shop")
    kubeapi.store.patch("pods", "b", {"status": {"phase": "Succeeded"}}, namespace="shop",
                        subresource="status")
    kubeapi.store.patch("pods", "c", {"status": {"phase": "Failed"}}, namespace="shop",
                        subresource="status")
    wait_for(lambda: _pods_in_registry(colony) == {"d", "annotated"}, timeout=5,
             what="deleted/finished pods gone")
    log = agent.log()
    assert log.count("provenance=OVERRIDDEN won.service_type=annotation") == 1, log[-3000:]
    assert "service=annotated" in log


def test_agent_restart_neither_drops_nor_duplicates(kubeapi, colony, node_agents):
    for i in range(10):
        kubeapi.store.create(pod(f"p{i}"))
    agent = node_agents("node-a")
    wait_for(lambda: len(_pods_in_registry(colony)) == 10, timeout=30, what="ten pods")
    agent.stop()
    kubeapi.store.create(pod("while-down"))
    kubeapi.store.delete("pods", "p0", namespace="shop")
    agent.start()
    expected = {f"p{i}" for i in range(1, 10)} | {"while-down"}
    wait_for(lambda: _pods_in_registry(colony) == expected, timeout=30, what="caught up")
    counts = added_counts(colony)
    assert counts and max(counts.values()) == 1, {k: v for k, v in counts.items() if v > 1}
    removed = _discovery_events(colony, "removed")
    assert removed == ["p0"], f"only the deleted pod may be removed, got {removed}"


def _discovery_events(colony, event: str) -> list[str]:
    with colony.client() as c:
        rows = c.audit(kind="discovery", limit=100_000)
    return sorted(key.split("/")[1] for r in rows
                  for e, key in discovery_record.events(r) if e == event)


def test_three_agents_report_their_node_and_services_filter_by_node(
        kubeapi, colony, node_agents):
    """Many agents: each agent reports its node; `coral services --node N`."""
    for node in ("node-a", "node-b", "node-c"):
        for i in range(3):
            kubeapi.store.create(pod(f"{node}-p{i}", node=node))
        node_agents(node)
    wait_for(lambda: len(registry(colony)) == 9, timeout=40, what="nine services")
    for node in ("node-a", "node-b", "node-c"):
        run = coral_procs.coral("services", "--node", node, "-o", "json",
                                env=colony.operator_env)
        assert run.returncode == 0, run.stderr
        rows = json.loads(run.stdout)
        assert sorted(r["pod_name"] for r in rows) == [f"{node}-p{i}" for i in range(3)]
        assert {r["agent"] for r in rows} == {f"node-{node}"}
    with colony.client() as c:
        agents = {a["agent_id"]: a for a in c.list_agents()}
    assert {a: agents[a]["runtime_mode"] for a in agents} == {
        f"node-{n}": "k8s_daemonset" for n in ("node-a", "node-b", "node-c")}
