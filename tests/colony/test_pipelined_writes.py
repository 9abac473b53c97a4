"""Issue 11, registration rate: on PostgreSQL a registration's registry transaction and an
audit group commit are pipelined (pgsql.Connection.pipeline: the reads in one round trip,
the writes and COMMIT in one more). A statement the server refuses in the middle of the
pipeline must still leave nothing half written, hand the error to the caller, and leave the
connection usable for the next one. Real PostgreSQL (the session's server)."""

from __future__ import annotations

import pytest

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import audit, pgsql, registry


def _row(agent_id: str) -> registry.AgentRow:
    return registry.AgentRow(agent_id=agent_id, version="1", runtime=agent_pb2.RuntimeContext(),
                             node_name="a", node_labels={}, labels={}, registered_at=1.0,
                             last_seen=1.0)


API = mesh_pb2.ServiceInfo(component_name="api", port=80, labels={"tier": "web"})
# PostgreSQL's text cannot hold U+0000 (the colony's guard skips such names before they
# reach the registry; the registry itself does not check). In a service, the server
# refuses the registration's write statement (agent row, count and services in one); in a
# pod, the pods' write fails after that statement was queued in the same pipeline.
REFUSED = mesh_pb2.ServiceInfo(component_name="bad\x00name", port=81)
REFUSED_POD = mesh_pb2.PodRef(namespace="shop", name="bad\x00pod")


@pytest.mark.parametrize("services, pods", [([API, REFUSED], []), ([API], [REFUSED_POD])],
                         ids=["service-refused", "pod-refused-after-the-write"])
def test_a_registration_the_server_refuses_mid_pipeline_writes_nothing(
        postgres_server, services, pods):
    reg = registry.Registry(postgres_server.fresh_dsn())
    try:
        with pytest.raises(registry.RegistryError, match="registration not stored"):
            reg.register(_row("node-a"), services, pods=pods)
        assert reg.get_agent("node-a") is None and reg.services() == []
        assert not reg._db.in_transaction  # rolled back, not left open on the connection
        # the same connection serves the next registration, and a re-registration
        before, diff = reg.register(_row("node-a"), [API], pods=[])
        assert before is None and diff.added == [API]
        before, diff = reg.register(_row("node-a"), [API], pods=[])
        assert before is not None and not (diff.added or diff.removed or diff.changed)
        assert [s for _, s in reg.services()] == [API]
    finally:
        reg.close()


def test_a_pipelined_audit_append_the_server_refuses_fails_whole_and_keeps_one_chain(
        postgres_server, tmp_path):
    """Attacker: the chain head in the database is set back (an edit to fork the chain):
    the next group commit's INSERT collides with a stored record, the server refuses it
    mid-pipeline, and no record of the commit is kept; once the head is put back the log
    appends again and verifies as one chain."""
    where = postgres_server.fresh_dsn()
    log = audit.AuditLog(where, key_file=tmp_path / "audit.key")
    raw = pgsql.connect(where, store="tamper")
    try:
        first = log.append("event", {"n": 1})
        log.append("event", {"n": 2})
        head = raw.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        raw.execute("UPDATE audit_head SET seq = ? WHERE id = 1", (first,))
        with pytest.raises(audit.AuditError, match="audit record not written"):
            log.append_all([("event", {"n": 3}), ("event", {"n": 4})])
        assert raw.execute("SELECT count(*) FROM audit").fetchone()[0] == head[0]
        assert not log._db.in_transaction
        raw.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", tuple(head))
        assert log.append("event", {"n": 5}) == head[0] + 1
        assert log.verify().ok
    finally:
        raw.close()
        log.close()


def test_a_postgresql_group_commit_larger_than_one_statement_chains_and_verifies(
        postgres_server, tmp_path):
    """The records of one group commit go in statements of up to _PG_APPEND_ROWS rows (the
    last also moves the chain head): 2,500 records at once (a fan-out's first wave) are all
    stored, in order, the head names the last, and the log verifies as one chain."""
    log = audit.AuditLog(postgres_server.fresh_dsn(), key_file=tmp_path / "audit.key")
    try:
        first = log.append("event", {"n": -1})
        seqs = log.append_all([("event", {"n": i}) for i in range(2500)])
        assert seqs == list(range(first + 1, first + 2501))
        assert log.head()[0] == seqs[-1]
        assert log.verify().ok
    finally:
        log.close()
