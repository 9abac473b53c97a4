"""Pure parts of issue 11: the SQLite -> PostgreSQL translation, colony address lists that
fail over, and which replicas count as dead."""

from __future__ import annotations

import pytest

from coral_lib import addresses
from coral_lib.colony import pgsql, replicas


@pytest.mark.parametrize("sql, expected", [
    ("SELECT a FROM t WHERE b = ? AND c = ?", ("SELECT a FROM t WHERE b = %s AND c = %s",)),
    ("BEGIN IMMEDIATE", ("BEGIN", f"SELECT pg_advisory_xact_lock({pgsql.lock_key('audit')})")),
    ("BEGIN", ("BEGIN ISOLATION LEVEL REPEATABLE READ",)),
    ("PRAGMA journal_mode=WAL", ()),
    ("SELECT json_extract(fields, '$.op_id') FROM audit",
     ("SELECT (fields::jsonb ->> 'op_id') FROM audit",)),
    ("INSERT OR IGNORE INTO h (id) VALUES (1)",
     ("INSERT INTO h (id) VALUES (1) ON CONFLICT DO NOTHING",)),
    ("CREATE TABLE x (a TEXT, b BLOB, c REAL, d INTEGER)",
     ('CREATE TABLE x (a TEXT COLLATE "C", b BYTEA, c DOUBLE PRECISION, d BIGINT)',)),
    ("SELECT 1 FROM t WHERE a LIKE 'x%'", ("SELECT 1 FROM t WHERE a LIKE 'x%%'",)),
])
def test_sqlite_statements_translate_for_postgresql(sql, expected):
    assert pgsql.translate(sql, "audit") == expected


def test_insert_or_replace_becomes_an_upsert_on_the_primary_key():
    assert pgsql.upsert("t", ["a", "b", "c"], ["a", "b"], "VALUES (?,?,?)") == (
        "INSERT INTO t (a, b, c) VALUES (?,?,?) ON CONFLICT (a, b) DO UPDATE SET "
        "c = EXCLUDED.c")
    assert pgsql.upsert("t", ["a"], ["a"], "VALUES (?)") == (
        "INSERT INTO t (a) VALUES (?) ON CONFLICT (a) DO NOTHING")


def test_each_store_locks_on_its_own_key():
    assert len({pgsql.lock_key(s) for s in ("audit", "registry", "approvals", "identity",
                                            "replicas", "schema")}) == 6


@pytest.mark.parametrize("address, target", [
    ("127.0.0.1:9443", "127.0.0.1:9443"),
    ("colony.example:9443", "colony.example:9443"),  # one name: gRPC resolves every address
    ("10.0.0.1:9443, 10.0.0.2:9443", "ipv4:10.0.0.1:9443,10.0.0.2:9443"),
    ("[::1]:9443,[::2]:9443", "ipv6:[::1]:9443,[::2]:9443"),
])
def test_colony_addresses_become_one_failover_target(address, target):
    assert addresses.grpc_target(address)[0] == target


def test_several_addresses_cap_grpc_reconnect_backoff_for_the_failover_bound():
    """Issue 11: "its agents re-link to the others within 10 s". With several replicas a
    client's reconnect backoff is capped low (gRPC's default grows to 120 s); one address
    keeps gRPC's default, so a lone colony that is down is not hammered."""
    options = dict(addresses.grpc_target("10.0.0.1:9443,10.0.0.2:9443")[1])
    assert options["grpc.max_reconnect_backoff_ms"] == addresses.FAILOVER_RECONNECT_CAP * 1000
    assert addresses.FAILOVER_RECONNECT_CAP <= 5
    assert addresses.grpc_target("10.0.0.1:9443")[1] == []
    assert addresses.several("10.0.0.1:9443, 10.0.0.2:9443")
    assert not addresses.several("colony.example:9443")


@pytest.mark.parametrize("address, error", [
    ("", "empty"), ("a.example:1,b.example:2", "one DNS name"),
    ("10.0.0.1:1,[::1]:2", "one family"), ("10.0.0.1", "host:port"), ("h:99999", "host:port"),
])
def test_bad_colony_addresses_are_named(address, error):
    with pytest.raises(addresses.AddressError, match=error):
        addresses.grpc_target(address)


def test_dead_replicas_are_the_others_with_an_old_heartbeat():
    rows = [replicas.Replica("me", "a:1", 0.0), replicas.Replica("fresh", "b:1", 98.0),
            replicas.Replica("stale", "c:1", 94.0)]
    assert [r.name for r in replicas.dead_replicas(rows, now=100.0, dead_after=5.0,
                                                   me="me")] == ["stale"]
