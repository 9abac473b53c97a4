"""Issue 11 follow-up: "`ListAgents` counts services with a full GROUP BY over ~1M rows on
every call: make it cheap (a maintained per-agent service count), both backends, with a
migration, and tests on both backends."

The registry keeps `service_counts` (one row per agent) in the same transaction as the
services; these tests hold it to the truth (a GROUP BY over `services`) on SQLite and on
a real PostgreSQL, through registration, re-registration, removal and a migration.
"""

from __future__ import annotations

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import registry, storage


def _agent(reg: registry.Registry, agent_id: str) -> None:
    reg.upsert_agent(registry.AgentRow(
        agent_id=agent_id, version="1", runtime=agent_pb2.RuntimeContext(), node_name="n1",
        node_labels={}, labels={}, registered_at=1.0, last_seen=1.0))


def _services(*names: str) -> list[mesh_pb2.ServiceInfo]:
    return [mesh_pb2.ServiceInfo(component_name=name, port=80 + i, labels={"tier": "web"})
            for i, name in enumerate(names)]


def _truth(reg: registry.Registry) -> dict[str, int]:
    """What the old code computed on every ListAgents call."""
    rows = reg._db.execute("SELECT agent_id, COUNT(*) FROM services GROUP BY agent_id")
    return dict(rows.fetchall())


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {agent: n for agent, n in counts.items() if n}


def test_list_agents_service_counts_are_maintained_not_grouped(database):
    """Counts follow every write (added, changed, removed services; duplicates of one key
    counted once; an agent removed, then back) and always equal a GROUP BY."""
    reg = registry.Registry(database("colony.db"))
    for agent in ("a", "b"):
        _agent(reg, agent)
    reg.replace_services("a", _services("api", "db", "cache"))
    reg.replace_services("b", _services("web"))
    assert reg.service_counts() == _truth(reg) == {"a": 3, "b": 1}
    reg.replace_services("a", _services("api", "queue"))  # one kept, one new, two gone
    reg.replace_services("b", _services("web") * 2)  # the same key twice: one service
    assert reg.service_counts() == _truth(reg) == {"a": 2, "b": 1}
    reg.replace_services("b", [])
    assert _nonzero(reg.service_counts()) == _truth(reg) == {"a": 2}
    assert reg.remove_agent("a", event="deregistered") == 2
    assert _nonzero(reg.service_counts()) == _truth(reg) == {}
    _agent(reg, "a")
    reg.replace_services("a", _services("api"))
    assert _nonzero(reg.service_counts()) == _truth(reg) == {"a": 1}
    reg.close()


def test_a_registry_from_before_service_counts_is_migrated_on_open(database):
    """A registry written before the counts table (dropped here, services kept) gets its
    counts once on open; a second open changes nothing, and writes keep them after."""
    where = database("colony.db")
    reg = registry.Registry(where)
    for agent in ("a", "b", "c"):
        _agent(reg, agent)
        reg.replace_services(agent, _services(*[f"svc-{i}" for i in range(ord(agent) - 96)]))
    reg.close()
    old = storage.connect(where, store="registry")
    old.execute("DROP TABLE service_counts")
    old.close()
    reg = registry.Registry(where)
    assert reg.service_counts() == _truth(reg) == {"a": 1, "b": 2, "c": 3}
    reg.close()
    reg = registry.Registry(where)
    assert reg.service_counts() == {"a": 1, "b": 2, "c": 3}
    reg.replace_services("c", _services("only"))
    assert reg.service_counts() == _truth(reg) == {"a": 1, "b": 2, "c": 1}
    reg.close()


def test_list_agents_counts_read_no_services_rows(tmp_path):
    """The cost itself (SQLite's statement trace): the counts are one read of the counts
    table, never a scan or GROUP BY of `services`, however many services are stored."""
    reg = registry.Registry(tmp_path / "colony.db")
    _agent(reg, "a")
    reg.replace_services("a", _services(*[f"svc-{i}" for i in range(50)]))
    statements: list[str] = []
    reg._reader.set_trace_callback(statements.append)
    assert reg.service_counts() == {"a": 50}
    assert statements and not [s for s in statements if "services" in s.split("FROM", 1)[-1]
                               .split()[0] or "GROUP BY" in s], statements
    reg.close()
