"""Issue 11, registration rate: "one audit record per registration (naming the agent, and
the added/removed/changed services with their names and a digest of the set) instead of one
per service", while `coral audit verify` keeps catching a tampered or removed registration
record. Audit logs on both backends (the `database` fixture: SQLite file, real PostgreSQL)."""

from __future__ import annotations

import json

import pytest

from coral_lib import convert
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import audit, discovery_record, storage


def _svc(name: str, port: int, **extra) -> mesh_pb2.ServiceInfo:
    return mesh_pb2.ServiceInfo(component_name=name, port=port, namespace="shop",
                                pod_name=f"{name}-0", container_name="app", **extra)


API, DB, WEB = _svc("api", 80), _svc("db", 5432), _svc("web", 8080)


def test_set_digest_names_the_whole_set_whatever_the_order():
    assert discovery_record.set_digest([API, DB]) == discovery_record.set_digest([DB, API])
    moved = _svc("api", 80, health_endpoint="/ready")  # same key, one field changed
    assert discovery_record.set_digest([API, DB]) != discovery_record.set_digest([moved, DB])
    assert discovery_record.set_digest([API]) != discovery_record.set_digest([API, DB])
    assert discovery_record.set_digest([]).startswith("sha256:")


def test_one_record_names_added_removed_and_changed_services():
    changed = _svc("api", 80, health_endpoint="/ready")
    overridden = _svc("web", 8080, provenance=mesh_pb2.SERVICE_PROVENANCE_OVERRIDDEN)
    fields = discovery_record.fields(agent_id="node-a", added=[DB], removed=[_svc("old", 1)],
                                     changed=[changed, overridden], now=[changed, DB, overridden],
                                     runtime="RUNTIME_MODE_NATIVE")
    assert fields["agent_id"] == "node-a" and fields["runtime"] == "RUNTIME_MODE_NATIVE"
    assert fields["added"] == ["shop/db-0/app/db:5432"]
    assert fields["removed"] == ["shop/old-0/app/old:1"]
    assert [s["health_endpoint"] for s in fields["changed"]] == ["/ready"]
    assert [s["component_name"] for s in fields["overridden"]] == ["web"]
    assert fields["services"] == 3
    assert fields["digest"] == discovery_record.set_digest([changed, DB, overridden])
    assert discovery_record.events(fields) == [
        ("added", "shop/db-0/app/db:5432"), ("removed", "shop/old-0/app/old:1"),
        ("changed", "shop/api-0/app/api:80"), ("overridden", "shop/web-0/app/web:8080")]


def test_an_unchanged_set_makes_no_record():
    assert discovery_record.fields(agent_id="a", added=[], removed=[], changed=[],
                                   now=[API]) is None


def test_older_per_service_records_still_read():
    old = {"event": "added", "agent_id": "a", "service": {
        "namespace": "shop", "pod_name": "api-0", "container_name": "app",
        "component_name": "api", "port": 80}}
    assert discovery_record.events(old) == [("added", "shop/api-0/app/api:80")]


@pytest.mark.parametrize("service", [
    API, mesh_pb2.ServiceInfo(component_name="host", port=22),  # a host service: no pod
    mesh_pb2.ServiceInfo(), _svc("ünï/cödé", 65535, labels={"tier": "web"})])
def test_older_records_key_a_service_as_convert_service_key_does(service):
    """Closing note, "discovery_record._key repeats the service key format": an older
    record's service dict (as convert.to_dict wrote it) reads as the one key format."""
    old = {"event": "removed", "service": convert.to_dict(service)}
    assert discovery_record.events(old) == [("removed", convert.service_key(service))]


def _registrations(database, tmp_path) -> tuple[audit.AuditLog, object]:
    where = database("audit.db")
    log = audit.AuditLog(where, key_file=tmp_path / "audit.key")
    for added, removed in (([API, DB], []), ([WEB], [DB])):
        log.discovery(discovery_record.fields(agent_id="node-a", added=added,
                                              removed=removed, changed=[], now=[API, WEB]))
    log.append("refused", {"requester": "x", "verb": "exec", "target": "t", "command": "",
                           "reason": "r", "rule": ""})
    return log, where


def _second_registration(db) -> tuple[int, dict]:
    rows = db.execute("SELECT seq, fields FROM audit WHERE kind = 'discovery' "
                      "ORDER BY seq").fetchall()
    return rows[1][0], json.loads(rows[1][1])


@pytest.mark.parametrize("tamper", ["hide_removed", "drop_added", "delete_record"])
def test_attacker_tampering_with_a_registration_record_is_caught_by_verify(
        database, tmp_path, tamper):
    """Someone with write access to the audit tables but not the key hides that db
    disappeared (or that web appeared), or deletes the whole registration record."""
    log, where = _registrations(database, tmp_path)
    try:
        assert log.verify().ok
        db = storage.connect(where, store="attacker")
        seq, fields = _second_registration(db)
        if tamper == "delete_record":
            db.execute("DELETE FROM audit WHERE seq = ?", (seq,))
        else:
            fields["removed" if tamper == "hide_removed" else "added"] = []
            db.execute("UPDATE audit SET fields = ? WHERE seq = ?",
                       (audit.canonical_json(fields), seq))
        db.close()
        result = log.verify()
        assert not result.ok and result.first_bad_id == seq, result
    finally:
        log.close()
