"""Churn (issue 4 acceptance): 1,000 pods created, relabelled and deleted on three nodes with
three DaemonSet agent processes, with watch drops and forced 410s in between; after
quiescence the colony registry equals the expected set exactly, with correct provenance,
and no service was registered twice (the colony audit's discovery "added" events)."""

from __future__ import annotations

import time

from tests.daemonset.conftest import NODES, added_counts, pod, registry
from tests.support.coral_procs import wait_for

N = 1000
SKIP = ("coral.io/skip", "true")
BATCH = 100  # a pause after each batch, so agents are mid-stream when the faults land


def _paced(i: int) -> None:
    if i % BATCH == BATCH - 1:
        time.sleep(0.05)


def _node(i: int) -> str:
    return NODES[i % len(NODES)]


def _create_all(kubeapi) -> None:
    for i in range(N):
        notes = {"coral.io/service-type": "grpc"} if i % 10 == 0 else None
        kubeapi.store.create(pod(f"churn-{i:04d}", node=_node(i), annotations=notes,
                                 labels={"app": f"svc-{i % 50}", "gen": "1"}, port=8000 + i % 7))
        _paced(i)


def _relabel_all(kubeapi) -> None:
    for i in range(N):
        labels = {"gen": "2"}
        if i % 7 == 0:
            labels["app"] = f"renamed-{i % 50}"
        if i % 13 == 0:
            labels[SKIP[0]] = SKIP[1]
        kubeapi.store.patch("pods", f"churn-{i:04d}", {"metadata": {"labels": labels}},
                            namespace="shop")
        _paced(i)


def _finish_some(kubeapi) -> None:
    for i in range(N):
        name = f"churn-{i:04d}"
        if i % 4 == 0:
            kubeapi.store.delete("pods", name, namespace="shop")
        elif i % 17 == 0:
            kubeapi.store.patch("pods", name, {"status": {"phase": "Succeeded"}},
                                namespace="shop", subresource="status")
        _paced(i)


def _expected() -> dict[tuple, tuple]:
    """Written out independently of the code under test."""
    out = {}
    for i in range(N):
        if i % 4 == 0 or i % 17 == 0 or i % 13 == 0:
            continue
        name = f"renamed-{i % 50}" if i % 7 == 0 else f"svc-{i % 50}"
        provenance = "overridden" if i % 10 == 0 else "discovered"
        key = (f"node-{_node(i)}", f"churn-{i:04d}", name, 8000 + i % 7)
        out[key] = (provenance, _node(i), "grpc" if i % 10 == 0 else "http")
    return out


def _actual(colony) -> dict[tuple, tuple]:
    return {(s["agent"], s["pod_name"], s["component_name"], s["port"]):
            (s["provenance"], s["node_name"], s["service_type"]) for s in registry(colony)}


def _fault(kubeapi) -> None:
    kubeapi.faults.drop_watches()
    kubeapi.faults.force_gone(2)
    kubeapi.compact()


def test_churn_1000_pods_three_nodes_registry_equals_expected_set_no_double_registration(
        kubeapi, colony, node_agents):
    agents = [node_agents(n, flags=["--exclude-label", "=".join(SKIP)]) for n in NODES]
    wait_for(lambda: kubeapi.store.watcher_count() == 3, timeout=30, what="three watches")
    _create_all(kubeapi)
    _fault(kubeapi)
    _relabel_all(kubeapi)
    kubeapi.faults.drop_watches()
    _finish_some(kubeapi)
    _fault(kubeapi)
    expected = _expected()
    assert {k[0] for k in expected} == {f"node-{n}" for n in NODES}
    try:
        wait_for(lambda: _actual(colony) == expected, timeout=90, interval=1.0,
                 what="registry equals the expected set")
    except TimeoutError:
        actual = _actual(colony)
        missing = sorted(set(expected) - set(actual))[:5]
        extra = sorted(set(actual) - set(expected))[:5]
        wrong = [(k, actual[k], v) for k, v in expected.items() if k in actual
                 and actual[k] != v][:5]
        raise AssertionError(f"missing {missing} extra {extra} wrong {wrong}; "
                             f"{agents[0].log()[-2000:]}") from None
    counts = added_counts(colony)
    twice = {k: v for k, v in counts.items() if v > 1}
    assert not twice, f"registered more than once: {list(twice.items())[:5]}"
    assert len(counts) >= len(expected)
    assert kubeapi.faults.injected >= 4
    assert sum("listing again" in a.log() for a in agents) >= 1  # a 410 made someone relist
