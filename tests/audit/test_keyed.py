"""The keyed chain: migration of unkeyed logs, the legacy boundary, and checkpoint cadence."""

from __future__ import annotations

import json
import pathlib
import sqlite3
import subprocess
import time

import pytest

from coral_lib.colony import audit, checkpoints

OLD_SCHEMA = f"""
CREATE TABLE audit (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL,
                    fields TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL,
                         hash TEXT NOT NULL);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{audit.GENESIS}');
"""


def _old_log(path: pathlib.Path, count: int) -> None:
    """An audit.db exactly as the unkeyed (SHA-256) version wrote it."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(OLD_SCHEMA)
    prev = audit.GENESIS
    for seq in range(1, count + 1):
        fields = audit.canonical_json({"op_id": f"op-{seq}", "command": "echo"})
        digest = audit.record_hash(prev_hash=prev, seq=seq, ts=1000.0 + seq, kind="started",
                                   fields_json=fields)
        db.execute("INSERT INTO audit VALUES (?, ?, 'started', ?, ?, ?)",
                   (seq, 1000.0 + seq, fields, prev, digest))
        prev = digest
    db.execute("UPDATE audit_head SET seq = ?, hash = ?", (count, prev))
    db.close()


def _verify(path: pathlib.Path) -> audit.VerifyResult:
    return audit.verify_file(path, audit.load_key(path.with_name("audit.key"), create=False))


def test_old_unkeyed_log_is_sealed_on_first_open_and_keeps_verifying(tmp_path):
    path = tmp_path / "audit.db"
    _old_log(path, 10)
    log = audit.AuditLog(path)
    sealed = log.list(kind="audit")
    assert [(r["id"], r["event"], r["legacy_records"]) for r in sealed] == [(11, "keyed", 10)]
    log.append("event", {"n": 1})
    assert log.verify() == audit.VerifyResult(True, 12, None, "12 records, chain intact")
    log.close()
    reopened = audit.AuditLog(path)  # no second seal
    assert len(reopened.list(kind="audit")) == 1 and reopened.verify().ok
    reopened.close()


def test_edit_of_a_sealed_unkeyed_record_is_detected(tmp_path):
    path = tmp_path / "audit.db"
    _old_log(path, 10)
    audit.AuditLog(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE audit SET fields = json_set(fields, '$.command', 'true') "
                   "WHERE seq = 3")
    result = _verify(path)
    assert not result.ok and result.first_bad_id == 3 and "modified" in result.reason


def test_unkeyed_records_rechained_after_sealing_are_detected(tmp_path):
    path = tmp_path / "audit.db"
    _old_log(path, 10)
    audit.AuditLog(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE audit SET fields = json_set(fields, '$.command', 'true') "
                   "WHERE seq = 3")
        prev = audit.GENESIS
        for seq, ts, kind, fields in db.execute(
                "SELECT seq, ts, kind, fields FROM audit WHERE seq <= 10 ORDER BY seq").fetchall():
            digest = audit.record_hash(prev_hash=prev, seq=seq, ts=ts, kind=kind,
                                       fields_json=fields)
            db.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?",
                       (prev, digest, seq))
            prev = digest
    result = _verify(path)
    assert not result.ok and result.first_bad_id == 10
    assert "unkeyed records were rewritten" in result.reason


def test_moving_the_legacy_boundary_is_detected(tmp_path):
    """Claiming every record is unkeyed (so it could be re-chained with SHA-256) fails."""
    path = tmp_path / "audit.db"
    log = audit.AuditLog(path)
    for i in range(5):
        log.append("event", {"i": i})
    log.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE audit_meta SET legacy_until = 5, legacy_head = "
                   "(SELECT hash FROM audit WHERE seq = 5)")
    result = _verify(path)
    assert not result.ok and "audit_meta row was modified" in result.reason


@pytest.mark.parametrize("attack", ["DROP TABLE audit_meta", "DELETE FROM audit_meta"])
def test_removed_meta_row_is_reported(tmp_path, attack):
    path = tmp_path / "audit.db"
    log = audit.AuditLog(path)
    log.append("event", {"i": 1})
    log.close()
    with sqlite3.connect(path) as db:
        db.execute(attack)
    result = _verify(path)
    assert not result.ok and "audit_meta" in result.reason


def test_verify_with_another_key_names_both_key_ids(tmp_path):
    path = tmp_path / "audit.db"
    log = audit.AuditLog(path)
    log.append("event", {"i": 1})
    log.close()
    other = bytes(32)
    result = audit.verify_file(path, other)
    assert not result.ok
    assert log.key_id in result.reason and audit.key_id(other) in result.reason


def test_key_file_is_private_and_outside_the_database(tmp_path):
    path = tmp_path / "audit.db"
    log = audit.AuditLog(path)
    log.append("event", {"i": 1})
    log.close()
    key = (tmp_path / "audit.key").read_text().strip()
    assert (tmp_path / "audit.key").stat().st_mode & 0o777 == 0o600
    assert key.encode() not in path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600


def _writer(tmp_path: pathlib.Path, **kw) -> checkpoints.Writer:
    return checkpoints.Writer(colony_id="colony-test", key_file=tmp_path / "checkpoint.key",
                              directory=str(tmp_path / "sink"), syslog="", **kw)


def _lines(tmp_path: pathlib.Path) -> list[dict]:
    sink = tmp_path / "sink" / checkpoints.SINK_FILE
    return [json.loads(line) for line in sink.read_text().splitlines()] if sink.exists() else []


def test_checkpoint_every_n_records_and_at_close_chained_across_restarts(tmp_path):
    log = audit.AuditLog(tmp_path / "audit.db", checkpoints=_writer(tmp_path, every=3,
                                                                     interval=3600))
    for i in range(7):
        log.append("event", {"i": i})
    assert [c["last_record_id"] for c in _lines(tmp_path)] == [3, 6]
    log.close()
    assert [c["last_record_id"] for c in _lines(tmp_path)] == [3, 6, 7]
    log = audit.AuditLog(tmp_path / "audit.db", checkpoints=_writer(tmp_path, every=3,
                                                                     interval=3600))
    log.append("event", {"i": 7})
    log.close()
    found = _lines(tmp_path)
    assert [(c["seq"], c["last_record_id"], c["record_count"]) for c in found] == [
        (1, 3, 3), (2, 6, 6), (3, 7, 7), (4, 8, 8)]
    public = checkpoints.load_public_key(tmp_path / "checkpoint.pub")
    good, problems = checkpoints.check_chain(found, public)
    assert problems == [] and len(good) == 4
    key = audit.load_key(tmp_path / "audit.key", create=False)
    report = checkpoints.verify(
        checkpoints=found, public=public, key_id=audit.key_id(key),
        chain=lambda on_row: audit.verify_file(tmp_path / "audit.db", key, on_row))
    assert report.ok, report


def test_checkpoint_after_interval_without_more_records(tmp_path):
    log = audit.AuditLog(tmp_path / "audit.db", checkpoints=_writer(tmp_path, every=1000,
                                                                     interval=0.2))
    log.append("event", {"i": 1})
    deadline = time.monotonic() + 10
    while not _lines(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [c["last_record_id"] for c in _lines(tmp_path)] == [1]
    time.sleep(0.5)  # nothing new: no new checkpoint
    log.close()
    assert len(_lines(tmp_path)) == 1


def test_restarted_checkpoint_chain_after_state_reset_is_reported(tmp_path):
    """An attacker who clears the colony's checkpoint memory makes it restart at 1."""
    log = audit.AuditLog(tmp_path / "audit.db", checkpoints=_writer(tmp_path, every=2,
                                                                     interval=3600))
    for i in range(4):
        log.append("event", {"i": i})
    log.close()
    with sqlite3.connect(tmp_path / "audit.db") as db:
        db.execute("DELETE FROM audit_checkpoint")
    log = audit.AuditLog(tmp_path / "audit.db", checkpoints=_writer(tmp_path, every=2,
                                                                     interval=3600))
    log.append("event", {"i": 5})
    log.close()
    public = checkpoints.load_public_key(tmp_path / "checkpoint.pub")
    _, problems = checkpoints.check_chain(_lines(tmp_path), public)
    assert problems and "does not follow" in problems[0]


def _clear_append_only(path: pathlib.Path) -> None:
    subprocess.run(["chattr", "-a", str(path)], check=False)


def test_append_only_sink_cannot_be_truncated_or_rewritten(tmp_path):
    writer = _writer(tmp_path, every=1, interval=3600, append_only=True)
    sink = tmp_path / "sink" / checkpoints.SINK_FILE
    try:
        flags = subprocess.run(["lsattr", str(sink)], capture_output=True, text=True)
        if flags.returncode or "a" not in flags.stdout.split()[0]:
            pytest.skip(f"append-only flag not supported here: {flags.stderr.strip()}")
        log = audit.AuditLog(tmp_path / "audit.db", checkpoints=writer)
        log.append("event", {"i": 1})
        log.append("event", {"i": 2})
        log.close()
        assert [c["last_record_id"] for c in _lines(tmp_path)] == [1, 2]
        with pytest.raises(PermissionError):
            open(sink, "w").close()  # truncate: refused even for root
        with pytest.raises(PermissionError):
            sink.unlink()
    finally:
        _clear_append_only(sink)


def test_read_takes_json_lines_and_syslog_lines_and_names_broken_ones(tmp_path):
    key = checkpoints.load_signing_key(tmp_path / "checkpoint.key")
    one = checkpoints.sign(key, {"type": checkpoints.TYPE, "colony_id": "c", "seq": 1,
                                 "last_record_id": 1, "last_hmac": "h", "record_count": 1,
                                 "ts": 1.0, "prev_digest": "", "key_id": "k"})
    text = json.dumps(one)
    mixed = tmp_path / "mixed.log"
    mixed.write_text("\n".join([
        "Nov 30 10:00:00 host sshd[1]: unrelated",
        text,
        f"Nov 30 10:00:01 host coral-colony: {checkpoints.TYPE}: {text}\x00",  # duplicate
        f"Nov 30 10:00:02 host coral-colony: {checkpoints.TYPE}: {{\"seq\": 2, trunc",
        f"{checkpoints.TYPE}: [1, 2]",
    ]))
    found, problems = checkpoints.read(mixed)
    assert found == [one]
    assert problems == [f"{mixed}:4: unreadable checkpoint line",
                        f"{mixed}:5: unreadable checkpoint line"]
