"""Issue 11, registration rate: registrations queued while another is being
written share one registry transaction (Registry.register through group_commit). Every
registration is still durable before its caller returns, a registration the server refuses
fails alone (the others are written, each in its own transaction), the same agent twice
in a group is written in order, and two replicas' groups of the same agents in opposite
orders never wait for each other in a cycle (keys locked in sorted order). Real
PostgreSQL (the session's server) and a real SQLite file, real threads."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import registry


def _row(agent_id: str, at: float = 1.0) -> registry.AgentRow:
    return registry.AgentRow(agent_id=agent_id, version="1", runtime=agent_pb2.RuntimeContext(),
                             node_name="a", node_labels={}, labels={}, registered_at=at,
                             last_seen=at)


def _services(agent_id: str, *, bad: bool = False) -> list[mesh_pb2.ServiceInfo]:
    name = "bad\x00name" if bad else "api"  # PostgreSQL's text cannot hold U+0000
    return [mesh_pb2.ServiceInfo(component_name=name, port=80, pod_name=agent_id,
                                 labels={"tier": "web"}),
            mesh_pb2.ServiceInfo(component_name="db", port=5432, pod_name=agent_id)]


def _queued_behind_the_lock(reg: registry.Registry, calls: list[tuple]) -> list:
    """Hold the registry's lock, start one thread per (row, services), wait until all are
    queued, release: the first thread to take the lock writes them all. Each call's
    outcome: (before, diff) or the exception it raised."""
    outcomes: list = [None] * len(calls)

    def call(i: int) -> None:
        row, services = calls[i]
        try:
            outcomes[i] = reg.register(row, services, pods=[])
        except Exception as exc:  # noqa: BLE001 - the test looks at each outcome
            outcomes[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
    with reg._lock:
        for i, thread in enumerate(threads):
            thread.start()
            deadline = time.monotonic() + 30  # queued in this order
            while len(reg._group._queue) <= i and time.monotonic() < deadline:
                time.sleep(0.001)
        assert len(reg._group._queue) == len(calls)
    for thread in threads:
        thread.join(60)
    return outcomes


@pytest.fixture
def reg(postgres_server):
    reg = registry.Registry(postgres_server.fresh_dsn())
    yield reg
    reg.close()


def _counting_transactions(reg: registry.Registry) -> list:
    counted: list = []
    real = reg._pipelined_transaction

    def counting(work, *, keys):
        counted.append(list(keys))
        return real(work, keys=keys)
    reg._pipelined_transaction = counting
    return counted


def test_registrations_queued_meanwhile_share_one_transaction_each_gets_its_own_diff(reg):
    transactions = _counting_transactions(reg)
    agents = [f"node-{i}" for i in range(12)]
    outcomes = _queued_behind_the_lock(reg, [(_row(a), _services(a)) for a in agents])
    assert transactions == [agents], "12 queued registrations should be one transaction"
    for agent, (before, diff) in zip(agents, outcomes, strict=True):
        assert before is None
        assert sorted(s.pod_name for s in diff.added) == [agent, agent]
    assert [a.agent_id for a in reg.agents()] == sorted(agents)
    assert len(reg.services()) == 24 and reg.service_counts() == dict.fromkeys(agents, 2)


def test_a_refused_registration_in_a_group_fails_alone(reg):
    """Attacker-style: one agent's registration carries what the server refuses; the
    registrations queued with it are still written (each alone), it is not, and its
    caller gets the error."""
    calls = [(_row("node-a"), _services("node-a")),
             (_row("node-bad"), _services("node-bad", bad=True)),
             (_row("node-c"), _services("node-c"))]
    outcomes = _queued_behind_the_lock(reg, calls)
    assert isinstance(outcomes[1], registry.RegistryError)
    assert "registration not stored" in str(outcomes[1])
    assert [diff.count for _, diff in (outcomes[0], outcomes[2])] == [2, 2]
    assert [a.agent_id for a in reg.agents()] == ["node-a", "node-c"]
    assert {agent for agent, _ in reg.services()} == {"node-a", "node-c"}
    assert not reg._db.in_transaction


def test_sqlite_registrations_queued_meanwhile_share_one_transaction_and_fail_alone(
        tmp_path, monkeypatch):
    """The same group commit on the SQLite registry (one BEGIN IMMEDIATE transaction for
    the queue). Shortcut, named: SQLite stores any text, so the refused write is simulated
    by a failing pods write for one agent (after its agent row and services were written
    in the group's transaction): that registration fails alone, the others are stored."""
    reg = registry.Registry(tmp_path / "registry.db")
    groups: list = []
    real_each, real_pods = reg._register_each, reg._store_pods

    def each(items):
        groups.append([row.agent_id for row, _, _ in items])
        return real_each(items)

    def pods(agent_id, wanted, **kw):
        if agent_id == "node-bad":
            raise sqlite3.OperationalError("disk I/O error")
        return real_pods(agent_id, wanted, **kw)
    monkeypatch.setattr(reg, "_register_each", each)
    monkeypatch.setattr(reg, "_store_pods", pods)
    try:
        good = [f"node-{i}" for i in range(5)]
        outcomes = _queued_behind_the_lock(reg, [(_row(a), _services(a)) for a in good])
        assert groups == [good] and all(diff.count == 2 for _, diff in outcomes)
        groups.clear()
        outcomes = _queued_behind_the_lock(reg, [
            (_row("node-x"), _services("node-x")), (_row("node-bad"), _services("node-bad")),
            (_row("node-y"), _services("node-y"))])
        assert groups == [["node-x", "node-bad", "node-y"], ["node-x"], ["node-bad"],
                          ["node-y"]]
        assert isinstance(outcomes[1], registry.RegistryError)
        assert [a.agent_id for a in reg.agents()] == sorted([*good, "node-x", "node-y"])
        assert not any(agent == "node-bad" for agent, _ in reg.services())
    finally:
        reg.close()


def test_the_same_agent_twice_in_a_group_is_written_in_order(reg):
    later = [mesh_pb2.ServiceInfo(component_name="web", port=8080, pod_name="node-a")]
    outcomes = _queued_behind_the_lock(reg, [
        (_row("node-a", 1.0), _services("node-a")), (_row("node-b"), _services("node-b")),
        (_row("node-a", 2.0), later)])
    assert outcomes[0][0] is None and outcomes[2][0].registered_at == 1.0
    assert outcomes[2][1].added == later and len(outcomes[2][1].removed) == 2
    assert [s for agent, s in reg.services() if agent == "node-a"] == later
    assert reg.get_agent("node-a").last_seen == 2.0


def _waiting_on_advisory_locks(where) -> int:
    from coral_lib.colony import pgsql
    conn = pgsql.connect(where, store="observer")
    try:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                            "'Lock' AND wait_event = 'advisory' AND datname = "
                            "current_database()").fetchone()[0]
    finally:
        conn.close()


def test_two_replicas_groups_of_the_same_agents_in_opposite_orders_both_commit(
        postgres_server):
    """Two replicas (two registries on one database) each write a group of the same
    agents, queued in opposite orders, while a third writer holds the middle agent's lock:
    both groups stop on that lock. Keys are locked in sorted order, so once it is released
    neither waits for the other in a cycle (PostgreSQL would break one with a deadlock
    error and its group would fall back to one by one); both groups commit whole."""
    import secrets

    from coral_lib.colony import pgsql
    from tests.support.coral_procs import wait_for

    where = postgres_server.fresh_dsn()
    first, second = registry.Registry(where), registry.Registry(where)
    blocker = pgsql.connect(where, store="registry")
    tag = secrets.token_hex(4)  # advisory locks are database-wide: ids of this test only
    agents = [f"node-{i}-{tag}" for i in range(8)]
    results: dict = {}
    transactions = [_counting_transactions(first), _counting_transactions(second)]
    try:
        blocker.begin_keyed(agents[4])
        runs = [threading.Thread(target=lambda r=r, order=order, name=name: results.__setitem__(
            name, _queued_behind_the_lock(r, [(_row(a), _services(a)) for a in order])))
            for r, order, name in ((first, agents, "first"),
                                   (second, agents[::-1], "second"))]
        for run in runs:
            run.start()
        wait_for(lambda: _waiting_on_advisory_locks(where) >= 2, timeout=30,
                 what="both groups waiting on a lock")
        blocker.execute("COMMIT")
        for run in runs:
            run.join(120)
        for name in ("first", "second"):
            assert not any(isinstance(o, Exception) for o in results[name]), results[name]
        assert [len(t) for t in transactions] == [1, 1], "a group fell back to one by one"
        assert [a.agent_id for a in first.agents()] == agents
        assert first.service_counts() == dict.fromkeys(agents, 2)
    finally:
        blocker.close()
        first.close()
        second.close()
