"""The SQLite registry: service diffs, filters, persistence across reopen, agent status."""

from __future__ import annotations

import pytest

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import registry


def svc(name, port, **kw):
    return mesh_pb2.ServiceInfo(component_name=name, port=port, **kw)


def agent_row(agent_id, node=""):
    return registry.AgentRow(agent_id=agent_id, version="1", runtime=agent_pb2.RuntimeContext(),
                             node_name=node, node_labels={}, labels={}, registered_at=1.0,
                             last_seen=1.0)


def test_replace_services_reports_diff_and_survives_reopen(database):
    reg = registry.Registry(database("r.db"))
    reg.upsert_agent(agent_row("a"))
    first = reg.replace_services("a", [svc("api", 80), svc("db", 5432)])
    assert [s.component_name for s in first.added] == ["api", "db"]
    second = reg.replace_services("a", [svc("api", 80, health_endpoint="/h"), svc("mq", 5672)])
    assert [s.component_name for s in second.added] == ["mq"]
    assert [s.component_name for s in second.removed] == ["db"]
    assert [s.health_endpoint for s in second.changed] == ["/h"]
    reg.close()
    again = registry.Registry(database("r.db"))
    assert sorted(s.component_name for _, s in again.services()) == ["api", "mq"]
    assert again.get_agent("a").agent_id == "a"


def test_filters_by_name_label_provenance_node_namespace(database):
    reg = registry.Registry(database("r.db"))
    reg.replace_services("a", [
        svc("api", 80, labels={"coral.io/tier": "web"}, provenance=2, node_name="n1",
            namespace="shop"),
        svc("db", 5432, labels={"coral.io/tier": "data"}, provenance=1, node_name="n2"),
    ])
    names = lambda **kw: [s.component_name for _, s in reg.services(registry.ServiceFilter(**kw))]  # noqa: E731
    assert names(name="db") == ["db"]
    assert names(labels={"coral.io/tier": "web"}) == ["api"]
    assert names(provenance=1) == ["db"]
    assert names(node="n1") == ["api"]
    assert names(namespace="shop") == ["api"]


@pytest.mark.parametrize("age, status", [(5, "healthy"), (45, "degraded"), (200, "unhealthy")])
def test_agent_status_from_heartbeat_age(age, status):
    assert registry.agent_status(last_seen=1000 - age, now=1000, degraded_after=30,
                                 unhealthy_after=90) == status


def test_label_filter_uses_the_label_index_and_old_registries_are_backfilled(tmp_path):
    reg = registry.Registry(tmp_path / "r.db")
    reg.replace_services("a", [svc("api", 80, labels={"app": "shop", "tier": "web"}),
                               svc("db", 5432, labels={"app": "shop", "tier": "data"})])
    reg.replace_services("a", [svc("api", 80, labels={"app": "shop", "tier": "edge"})])
    flt = registry.ServiceFilter(labels={"app": "shop", "tier": "edge"})
    assert [s.component_name for _, s in reg.services(flt)] == ["api"]
    assert reg.services(registry.ServiceFilter(labels={"tier": "data"})) == []
    sql, args = registry._service_query(flt)
    plan = " ".join(str(r) for r in reg._db.execute(f"EXPLAIN QUERY PLAN {sql}", args))
    assert "service_labels_page" in plan
    reg._db.execute("DELETE FROM service_labels")  # as written before the index existed
    reg.close()
    again = registry.Registry(tmp_path / "r.db")
    assert [s.component_name for _, s in again.services(flt)] == ["api"]
