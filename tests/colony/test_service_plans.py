"""Issue 11, `ListServices` p99 at 1,000,000 services on PostgreSQL: a namespace filtered
by a label pair checks each of the namespace's rows with one primary-key lookup. With an
EXISTS, PostgreSQL chose a merge semi-join reading every index entry of the label pair
(250,000 for tier=web at 1,000,000 services) to check 2,000 candidates; the EXPLAIN
ANALYZE of the real query on a real server counts the label rows it reads."""

from __future__ import annotations

import json

from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import registry

TIERS = ("web", "api", "db", "cache")


def services_of(agent: int) -> list[mesh_pb2.ServiceInfo]:
    """The bench's shape: each agent's services spread over 100 namespaces, 4 tiers."""
    return [mesh_pb2.ServiceInfo(component_name=f"svc-{j}", port=8000 + j,
                                 namespace=f"ns-{(agent + j) % 100}",
                                 labels={"app": f"app-{j}", "tier": TIERS[j % 4]})
            for j in range(40)]


def _label_rows_read(node: dict) -> int:
    """Label-table rows read by a plan node and its children (rows x loops)."""
    own = node.get("Actual Rows", 0) * node.get("Actual Loops", 1) \
        if node.get("Relation Name") == "service_labels" else 0
    return own + sum(_label_rows_read(child) for child in node.get("Plans", []))


def test_namespace_and_label_reads_one_label_row_per_candidate(postgres_server):
    where = postgres_server.fresh_dsn()
    reg = registry.Registry(where)
    for agent in range(150):
        reg.replace_services(f"agent-{agent:04d}", services_of(agent))
    reg._db.execute("ANALYZE")
    flt, by_label = reg._plan(registry.ServiceFilter(namespace="ns-7", labels={"tier": "web"}))
    sql, args = registry._service_query(flt, limit=1001, by_label=by_label)
    (plan,) = reg._db.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, args).fetchone()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    candidates = reg._db.execute("SELECT COUNT(*) FROM services WHERE namespace = 'ns-7'"
                                 ).fetchone()[0]
    tier_rows = reg._db.execute("SELECT COUNT(*) FROM service_labels WHERE label = 'tier' "
                                "AND value = 'web'").fetchone()[0]
    assert 0 < candidates < tier_rows / 10
    assert _label_rows_read(plan[0]["Plan"]) <= candidates, json.dumps(plan, indent=1)
    assert reg.services(flt) and all(s.namespace == "ns-7" and s.labels["tier"] == "web"
                                     for _, s in reg.services(flt))
    reg.close()
