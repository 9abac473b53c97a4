"""Issue 11, registration rate: a registration is one registry transaction (agent row,
services, pods, no longer departed) that writes only what differs from the stored set.
Both backends (the `database` fixture: SQLite file, real PostgreSQL)."""

from __future__ import annotations

import dataclasses
import sqlite3

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
    def broken(agent_id, pods, **_):
        raise RuntimeError("pods not written")
    monkeypatch.setattr(reg, "_store_pods", broken)
    with pytest.raises(RuntimeError, match="pods not written"):
        reg.register(_row(1.0), [API], pods=[POD])
    assert reg.get_agent("node-a") is None and reg.services() == []


class _FailingOn:
    """The registry's connection, failing the first statement that contains `text`."""

    def __init__(self, db, text: str) -> None:
        self.db, self.text = db, text

    def execute(self, sql, *args):
        if self.text in sql:
            raise sqlite3.OperationalError(f"injected failure: {self.text}")
        return self.db.execute(sql, *args)


def test_a_failed_agent_removal_leaves_nothing_half_removed(reg, monkeypatch):
    """Closing note, "`remove_agent` keeps its own transaction block": it now runs in the
    registry's shared transaction (Registry._transaction) and stays all-or-nothing: the
    departed mark fails after the agent row and its services were deleted in the same
    transaction, and all of them are still there."""
    reg.register(_row(1.0), [API, DB], pods=[POD])
    monkeypatch.setattr(reg, "_db", _FailingOn(reg._db, "departed_agents"))
    with pytest.raises(registry.RegistryError, match="injected failure"):
        reg.remove_agent("node-a", event="expired", now=2.0)
    monkeypatch.undo()
    assert reg.get_agent("node-a") is not None and len(reg.services()) == 2
    assert reg.pods() == [("node-a", POD)] and reg.departed("node-a") is None
    assert reg.remove_agent("node-a", event="expired", now=3.0) == 2
    assert reg.get_agent("node-a") is None and reg.services() == [] and reg.pods() == []
    assert reg.departed("node-a") == ("expired", 3.0)
    assert reg.remove_agent("node-a", event="expired") is None  # gone: nothing written
    assert reg.departed("node-a") == ("expired", 3.0)


def _waiting_on_a_lock(where) -> int:
    from coral_lib.colony import pgsql
    conn = pgsql.connect(where, store="observer")
    try:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                            "'Lock' AND wait_event = 'advisory' AND datname = "
                            "current_database() AND query LIKE '%advisory_xact_lock%'"
                            ).fetchone()[0]
    finally:
        conn.close()


def test_postgresql_registrations_of_other_agents_do_not_wait_for_each_other(postgres_server):
    """Issue 11, finer PostgreSQL locking: a registration holds a lock of its agent (and the
    registry's lock shared), not the registry-wide lock every other registry write takes.
    Another replica's open transaction for agent A (a raw connection here) does not hold up
    agent B's registration; A's own registration waits for it, and so does every agent's
    while a store-wide writer (BEGIN IMMEDIATE) holds the registry."""
    import concurrent.futures
    import secrets

    from coral_lib.colony import pgsql
    from tests.support.coral_procs import wait_for

    where = postgres_server.fresh_dsn()
    reg = registry.Registry(where)
    other = pgsql.connect(where, store="registry")  # the other replica's registry writer
    tag = secrets.token_hex(4)  # advisory locks are database-wide: ids of this test only

    def row(agent: str) -> registry.AgentRow:
        return dataclasses.replace(_row(1.0), agent_id=f"{agent}-{tag}")
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        other.begin_keyed(f"a-{tag}")
        # b's registration completes while a's lock is held
        assert pool.submit(reg.register, row("b"), [API], pods=[]).result(timeout=20)
        held_up = pool.submit(reg.register, row("a"), [API], pods=[])
        wait_for(lambda: _waiting_on_a_lock(where) >= 1, timeout=20,
                 what="a's registration waiting for a's lock")
        assert not held_up.done()
        other.execute("COMMIT")
        assert held_up.result(timeout=20)[0] is None
        other.execute("BEGIN IMMEDIATE")  # a store-wide writer: every registration waits
        held_up = pool.submit(reg.register, row("c"), [API], pods=[])
        wait_for(lambda: _waiting_on_a_lock(where) >= 1, timeout=20,
                 what="c's registration waiting for the registry lock")
        assert not held_up.done()
        other.execute("COMMIT")
        held_up.result(timeout=20)
        assert {a.agent_id for a in reg.agents()} == {f"{x}-{tag}" for x in "abc"}
    finally:
        pool.shutdown(wait=False)
        other.close()
        reg.close()


def test_postgresql_agent_lock_key_is_quoted_not_run(postgres_server):
    """begin_keyed sends BEGIN and both locks as one text (one round trip, issue 11
    registration rate): the agent id goes in as a quoted literal, so an id holding a quote,
    a semicolon and a comment locks that id and runs nothing else."""
    import concurrent.futures
    import secrets

    from coral_lib.colony import pgsql
    from tests.support.coral_procs import wait_for

    where = postgres_server.fresh_dsn()
    reg = registry.Registry(where)
    other = pgsql.connect(where, store="registry")
    hostile = f"a'); DROP TABLE agents; --{secrets.token_hex(4)}"
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        other.begin_keyed(hostile)
        assert other.in_transaction
        held_up = pool.submit(reg.register, dataclasses.replace(_row(1.0), agent_id=hostile),
                              [API], pods=[])
        wait_for(lambda: _waiting_on_a_lock(where) >= 1, timeout=20,
                 what="the hostile id's registration waiting for its lock")
        other.execute("COMMIT")
        assert held_up.result(timeout=20)[0] is None
        assert [a.agent_id for a in reg.agents()] == [hostile]
    finally:
        pool.shutdown(wait=False)
        other.close()
        reg.close()
