"""Acceptance: modify, delete and reorder one record at each position of a 1,000-record log;
`verify()` catches every case and names the first bad record.

The log is built once (conftest `log_1000`); each case works on its own copy of the SQLite
file, tampered with through a plain sqlite3 connection as an attacker would. Positions are
split into chunks so a failure names its positions without 3,000 separate test items.
"""

from __future__ import annotations

import pathlib
import shutil
import sqlite3

import pytest

from coral_lib.colony import audit
from tests.audit import conftest

CHUNK = 100
CHUNKS = [range(start, min(start + CHUNK, conftest.RECORDS + 1))
          for start in range(1, conftest.RECORDS + 1, CHUNK)]


def _key(db: pathlib.Path) -> pathlib.Path:
    """The copies are verified with the key of the log they were copied from."""
    return db.with_name("audit.key")


def _modify(db: sqlite3.Connection, pos: int) -> int:
    """Change one column of record `pos`, rotating through every column an attacker might."""
    edits = [
        "UPDATE audit SET fields = json_set(fields, '$.tampered', 1) WHERE seq = ?",
        "UPDATE audit SET ts = ts + 0.001 WHERE seq = ?",
        "UPDATE audit SET kind = kind || 'x' WHERE seq = ?",
        "UPDATE audit SET hash = substr(hash, 2) || '0' WHERE seq = ?",
        "UPDATE audit SET prev_hash = substr(prev_hash, 2) || '1' WHERE seq = ?",
        "UPDATE audit SET fields = replace(fields, ':', ': ') WHERE seq = ?",  # layout only
    ]
    db.execute(edits[pos % len(edits)], (pos,))
    return pos


def _delete(db: sqlite3.Connection, pos: int) -> int:
    db.execute("DELETE FROM audit WHERE seq = ?", (pos,))
    return pos


def _reorder(db: sqlite3.Connection, pos: int) -> int:
    """Swap record `pos` with its successor (the last one with its predecessor)."""
    other = pos + 1 if pos < conftest.RECORDS else pos - 1
    cols = "ts, kind, fields, prev_hash, hash"
    a = db.execute(f"SELECT {cols} FROM audit WHERE seq = ?", (pos,)).fetchone()
    b = db.execute(f"SELECT {cols} FROM audit WHERE seq = ?", (other,)).fetchone()
    sql = "UPDATE audit SET ts=?, kind=?, fields=?, prev_hash=?, hash=? WHERE seq = ?"
    db.execute(sql, (*b, pos))
    db.execute(sql, (*a, other))
    return min(pos, other)


def _run_case(source: pathlib.Path, work: pathlib.Path, tamper, pos: int) -> str:
    shutil.copyfile(source, work)
    with sqlite3.connect(work) as db:
        db.execute("PRAGMA synchronous=OFF")  # a scratch copy: no need to wait for the disk
        expected = tamper(db, pos)
    db.close()
    log = audit.AuditLog(work, key_file=_key(source))
    try:
        result = log.verify()
    finally:
        log.close()
    if result.ok or result.first_bad_id != expected:
        return f"pos {pos}: expected first bad {expected}, got {result}"
    return ""


@pytest.mark.parametrize("tamper", [_modify, _delete, _reorder], ids=["modify", "delete",
                                                                     "reorder"])
@pytest.mark.parametrize("positions", CHUNKS, ids=lambda r: f"{r.start}-{r.stop - 1}")
def test_verify_catches_tampering_at_every_position_of_1000_record_log(
    log_1000: pathlib.Path, scratch_dir: pathlib.Path, tamper, positions: range
) -> None:
    misses = [_run_case(log_1000, scratch_dir / "case.db", tamper, pos) for pos in positions]
    assert [m for m in misses if m] == []


def test_untampered_1000_record_log_verifies(log_1000: pathlib.Path, tmp_path) -> None:
    work = tmp_path / "copy.db"
    shutil.copyfile(log_1000, work)
    log = audit.AuditLog(work, key_file=_key(log_1000))
    assert log.verify() == audit.VerifyResult(True, 1000, None, "1000 records, chain intact")
    log.close()


@pytest.mark.parametrize("count", [1, 2, 17])
def test_verify_catches_truncated_tail(log_1000: pathlib.Path, tmp_path, count: int) -> None:
    """Deleting the newest records is caught through the head row."""
    work = tmp_path / "copy.db"
    shutil.copyfile(log_1000, work)
    with sqlite3.connect(work) as db:
        db.execute("DELETE FROM audit WHERE seq > ?", (1000 - count,))
    db.close()
    log = audit.AuditLog(work, key_file=_key(log_1000))
    result = log.verify()
    log.close()
    assert not result.ok and result.first_bad_id == 1001 - count
    assert "tail" in result.reason


def test_verify_catches_forged_appended_record(log_1000: pathlib.Path, tmp_path) -> None:
    """A record inserted after the head (with a correct chain hash) is still caught."""
    work = tmp_path / "copy.db"
    shutil.copyfile(log_1000, work)
    with sqlite3.connect(work) as db:
        prev = db.execute("SELECT hash FROM audit WHERE seq = 1000").fetchone()[0]
        fields = audit.canonical_json({"op_id": "forged"})
        digest = audit.record_hash(prev_hash=prev, seq=1001, ts=1.0, kind="started",
                                   fields_json=fields)
        db.execute("INSERT INTO audit VALUES (1001, 1.0, 'started', ?, ?, ?)",
                   (fields, prev, digest))
    db.close()
    log = audit.AuditLog(work, key_file=_key(log_1000))
    result = log.verify()
    log.close()
    assert not result.ok and result.first_bad_id == 1001


def test_verify_catches_deleted_head_row(log_1000: pathlib.Path, tmp_path) -> None:
    work = tmp_path / "copy.db"
    shutil.copyfile(log_1000, work)
    with sqlite3.connect(work) as db:
        db.execute("DELETE FROM audit_head")
    db.close()
    # Opening re-creates the schema; the re-seeded head (seq 0) no longer matches the rows.
    log = audit.AuditLog(work, key_file=_key(log_1000))
    result = log.verify()
    log.close()
    assert not result.ok and result.first_bad_id == 1
