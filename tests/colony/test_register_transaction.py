"""Issue 11, registration rate: a registration is one registry transaction (agent row,
services, pods, no longer departed) that writes only what differs from the stored set.
Both backends (the `database` fixture: SQLite file, real PostgreSQL)."""

from __future__ import annotations

import pytest

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import registry


def _row(at: float) -> registry.AgentRow:
    return registry.AgentRow(agent_id="node-a", version="1", runtime=agent_pb2.RuntimeContext(),
                             node_name="a", node_labels={}, labels={}, registered_at=at,
                             last_seen=at)


API = mesh_pb2.ServiceInfo(component_name="api", port=80, labels={"tier": "web"})
DB = mesh_pb2.ServiceInfo(component_name="db", port=5432, labels={"tier": "data"})
POD = mesh_pb2.PodRef(namespace="shop", name="web-0", containers=["app"])


@pytest.fixture
def reg(database):
    reg = registry.Registry(database("colony.db"))
    yield reg
    reg.close()


def test_register_stores_agent_services_and_pods_and_returns_the_diff(reg):
    reg.upsert_agent(_row(1.0))
    assert reg.remove_agent("node-a", event="expired", now=2.0) == 0
    before, diff = reg.register(_row(3.0), [API, DB], pods=[POD])
    assert before is None and [s.component_name for s in diff.added] == ["api", "db"]
    assert reg.departed("node-a") is None  # registered again: no longer reported as gone
    assert reg.pods() == [("node-a", POD)]
    assert [s.component_name for _, s in reg.services(registry.ServiceFilter(
        labels={"tier": "data"}))] == ["db"]


def test_a_re_registration_keeps_registered_at_and_writes_only_the_differences(reg):
    reg.register(_row(1.0), [API, DB], pods=[POD])
    before, same = reg.register(_row(5.0), [DB, API], pods=[POD])
    assert before.registered_at == 1.0 and not (same.added or same.removed or same.changed)
    agent = reg.get_agent("node-a")
    assert (agent.registered_at, agent.last_seen) == (1.0, 5.0)
    moved = mesh_pb2.ServiceInfo(component_name="api", port=80, labels={"tier": "edge"})
    _, diff = reg.register(_row(9.0), [moved], pods=[])
    assert diff.changed == [moved] and diff.removed == [DB] and not diff.added
    assert [s for _, s in reg.services()] == [moved] and reg.pods() == []
    assert reg.services(registry.ServiceFilter(labels={"tier": "web"})) == []


def test_a_failed_registration_leaves_nothing_half_written(reg, monkeypatch):
    """The pods' write fails after the agent row and services were written in the same
    transaction: none of them stays."""
    def broken(agent_id, pods):
        raise RuntimeError("pods not written")
    monkeypatch.setattr(reg, "_store_pods", broken)
    with pytest.raises(RuntimeError, match="pods not written"):
        reg.register(_row(1.0), [API], pods=[POD])
    assert reg.get_agent("node-a") is None and reg.services() == []
