"""Issue 11, storage backends: "SQLite stays the default; PostgreSQL (psycopg 3) is chosen
with --database postgresql://... (DSN from a file or environment; a password never reaches
logs). Schema migrations for both. The colony's storage tests run against both backends."

Every test here takes the `database` fixture (tests/conftest.py), so it runs once on SQLite
files and once on a real PostgreSQL server (initdb'd by the session fixture). Other storage
tests (tests/colony/test_registry.py, tests/policy/test_approvals.py) take it too.
"""

from __future__ import annotations

import concurrent.futures
import logging
import sqlite3

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from coral_lib import convert
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import approvals, audit, dsn, enrollment, pki, registry, storage
from tests.support import coral_procs


def _csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    from cryptography.hazmat.primitives import serialization
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


def test_storage_backends_pass_the_same_suite(database, tmp_path):
    """Registry, audit (chain, interrupted ops, filters, group commit), approvals, join
    tokens, revocations and checkpoints' bookkeeping: same calls, same answers."""
    where = database
    reg = registry.Registry(where("colony.db"))
    reg.upsert_agent(registry.AgentRow(
        agent_id="web-1", version="1", runtime=agent_pb2.RuntimeContext(), node_name="n1",
        node_labels={"zone": "a"}, labels={}, registered_at=1.0, last_seen=1.0))
    diff = reg.replace_services("web-1", [
        mesh_pb2.ServiceInfo(component_name="api", port=80, labels={"tier": "web"}),
        mesh_pb2.ServiceInfo(component_name="db", port=5432, labels={"tier": "data"})])
    assert [s.component_name for s in diff.added] == ["api", "db"]
    assert reg.touch("web-1", now=5.0) and not reg.touch("nobody")
    assert reg.get_agent("web-1").node_labels == {"zone": "a"}
    assert reg.service_counts() == {"web-1": 2}
    assert [s.component_name for _, s in reg.services(registry.ServiceFilter(
        labels={"tier": "data"}))] == ["db"]
    pod = mesh_pb2.PodRef(namespace="shop", name="web-0", containers=["app"])
    reg.replace_pods("web-1", [pod])
    reg.replace_pods("web-1", [pod])  # a complete list again: replaced, not duplicated
    assert reg.pods() == [("web-1", pod)] and reg.pod("web-1", "shop", "web-0") == pod
    key = convert.service_key(diff.added[0])
    for state in ("unknown", "healthy"):  # INSERT OR REPLACE on (agent_id, key)
        reg.set_health("web-1", [mesh_pb2.ServiceHealth(service_key=key, state=state)])
    assert [h.state for h in reg.health_of([("web-1", key)]).values()] == ["healthy"]
    reg.upsert_agent(registry.AgentRow(
        agent_id="gone", version="1", runtime=agent_pb2.RuntimeContext(), node_name="n2",
        node_labels={}, labels={}, registered_at=1.0, last_seen=1.0))
    for event in ("expired", "pruned"):  # departed twice: the newer event wins
        reg.upsert_agent(registry.AgentRow(
            agent_id="gone", version="1", runtime=agent_pb2.RuntimeContext(), node_name="n2",
            node_labels={}, labels={}, registered_at=1.0, last_seen=1.0))
        assert reg.remove_agent("gone", event=event, now=7.0) == 0
    assert reg.departed("gone") == ("pruned", 7.0) and reg.remove_agent("x", event="e") is None
    reg.register(registry.AgentRow(  # registered again: no longer reported as departed
        agent_id="gone", version="1", runtime=agent_pb2.RuntimeContext(), node_name="n2",
        node_labels={}, labels={}, registered_at=8.0, last_seen=8.0), [], pods=[])
    assert reg.departed("gone") is None

    log = audit.AuditLog(where("audit.db"), key_file=tmp_path / "audit.key")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # group commit from many threads
        seqs = list(pool.map(lambda i: log.started(
            op_id=f"op-{i}", requester="alice", verb="exec", agent_id="web-1", runtime="host",
            service="api", namespace="", pod="", provenance="EXPLICIT", command=f"echo {i}"),
            range(20)))
    assert sorted(seqs) == list(range(1, 21))
    log.finished(op_id="op-0", status="ok", exit_code=0, duration=0.1, bytes_out=1)
    assert log.mark_interrupted() == 19
    assert log.mark_interrupted() == 0
    assert [r["status"] for r in log.list(op_id="op-0", kind="finished")] == ["ok"]
    assert len(log.list(requester="alice")) == 20 and log.list(tail=True, limit=1)[0]["id"] == 40
    assert log.verify().ok and log.verify().checked == 40

    store = approvals.ApprovalStore(where("approvals.db"))
    approval_id = store.request(requester="alice", verb="exec", target="t", command="id",
                                ttl=60, scope="[]")
    assert store.approve(approval_id, approver="bob").state == "approved"
    with pytest.raises(approvals.ApprovalError):
        store.approve(approval_id, approver="carol")

    files = pki.ensure(tmp_path / "data")
    enroll = enrollment.Enrollment(files, colony_id="c1", audit=log,
                                   database=where("identity.db")
                                   if isinstance(where("identity.db"), dsn.Dsn) else "")
    token, _ = enroll.create_token("host-a", created_by="admin")
    issued = enroll.join(join_token=token, service_account_token="", csr_der=_csr(),
                         hint="", peer="test")
    assert issued.who.agent_id == "host-a"
    with pytest.raises(enrollment.Refused, match="already used"):
        enroll.join(join_token=token, service_account_token="", csr_der=_csr(), hint="",
                    peer="test")
    enroll.revoke("host-a", by="admin")
    assert enroll.revoked_at("host-a") is not None

    for closable in (reg, store, enroll, log):
        closable.close()
    again = audit.AuditLog(where("audit.db"), key_file=tmp_path / "audit.key")  # migrations
    assert again.verify().ok and again.head()[0] > 40  # re-open is idempotent
    again.close()
    assert registry.Registry(where("colony.db")).service_counts() == {"web-1": 2}


def test_dsn_password_never_logged(postgres_server, caplog, tmp_path, monkeypatch):
    """A password never reaches logs, errors or repr(): wrong password, unreachable server,
    a SQL error, and the DSN given through a file or the environment."""
    good = postgres_server.url()
    wrong = good.replace(postgres_server.password, "hunter2-wrong-password")
    caplog.set_level(logging.DEBUG)
    texts = []
    for url in (wrong, good.replace(f":{postgres_server.port}/", ":1/")):
        with pytest.raises(registry.RegistryError) as info:
            registry.Registry(dsn.Dsn(url))
        texts.append(str(info.value))
        logging.getLogger("test").error("failed: %s (%r)", info.value, dsn.Dsn(url))
    where = postgres_server.fresh_dsn()
    conn = storage.connect(where, store="test")
    with pytest.raises(sqlite3.Error) as info:
        conn.execute("SELECT * FROM no_such_table WHERE x = ?", ("y",))
    texts.append(str(info.value))
    (tmp_path / "dsn").write_text(good + "\n")
    monkeypatch.setenv("CORAL_TEST_DSN", good)
    for value in ("file:" + str(tmp_path / "dsn"), "env:CORAL_TEST_DSN", good):
        resolved = dsn.resolve(value)
        assert resolved.secret() == good
        texts += [str(resolved), repr(resolved), f"{resolved}"]
    texts.append(caplog.text)
    for text in texts:
        assert postgres_server.password not in text and "hunter2" not in text, text
    assert "password authentication failed" in texts[0]  # the cause is still named
    assert "***" in texts[-2]


@pytest.mark.parametrize("raw, shown", [
    ("postgresql://u:s3cr3t@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql://u@h/db?password=s3cr3t&sslmode=require",
     "postgresql://u@h/db?password=***&sslmode=require"),
    ("host=h user=u password='s3 cr3t' dbname=db", "host=h user=u password=*** dbname=db"),
])
def test_redact_hides_passwords_in_every_dsn_form(raw, shown):
    assert dsn.redact(raw) == shown


@pytest.mark.parametrize("value, error", [
    ("mysql://u:p@h/db", "expected a postgresql:// DSN"),
    ("env:CORAL_NOT_SET_ANYWHERE", "CORAL_NOT_SET_ANYWHERE is not set"),
    ("file:/nonexistent/dsn", "cannot read it"),
])
def test_bad_database_setting_named_without_echoing_it(value, error):
    with pytest.raises(dsn.DsnError, match=error) as info:
        dsn.resolve(value)
    assert ":p@" not in str(info.value)


def test_sqlite_is_the_default():
    assert dsn.resolve("") is None and dsn.resolve("sqlite") is None


def test_audit_log_refuses_a_second_key(database, tmp_path):
    """Replicas sharing one log must share its key: a replica with its own key would chain
    records nobody can verify, so it is refused at open with both key ids named."""
    first = audit.AuditLog(database("audit.db"), key_file=tmp_path / "a.key")
    first.append("event", {"i": 1})
    first.close()
    with pytest.raises(audit.AuditError, match="same audit key") as info:
        audit.AuditLog(database("audit.db"), key_file=tmp_path / "b.key")
    assert first.key_id in str(info.value)


def test_backup_of_a_postgresql_colony_names_a_database_setting_it_cannot_use(tmp_path):
    """`coral colony backup` pg_dumps a PostgreSQL colony's tables (tests/backup/
    test_postgres_backup.py); a database setting that names no DSN is refused up front,
    named, and no file is written (rather than a backup that looks complete without them)."""
    config = tmp_path / "colony.yaml"
    config.write_text("database: env:CORAL_TEST_DSN_NOT_SET\n")
    run = coral_procs.coral("colony", "backup", "--data-dir", str(tmp_path / "data"),
                            "--config", str(config), "--to", str(tmp_path / "b.tar"))
    assert run.returncode == 2 and "CORAL_TEST_DSN_NOT_SET is not set" in run.stderr, run.stderr
    assert not (tmp_path / "b.tar").exists()
