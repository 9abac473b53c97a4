"""Disk full and read-only data directory: AuditError with a clear message, nothing corrupted."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from coral_lib.colony import audit


def test_disk_full_raises_audit_error_and_keeps_stored_records(small_tmpfs) -> None:
    """A real 256 KiB tmpfs fills up: the failing append is rolled back whole."""
    log = audit.AuditLog(small_tmpfs / "audit.db")
    written = 0
    with pytest.raises(audit.AuditError, match="full") as failure:
        for i in range(10_000):
            log.append("blob", {"i": i, "payload": "x" * 4000})
            written += 1
    assert str(small_tmpfs) in str(failure.value)
    assert written > 0
    result = log.verify()
    assert result.ok and result.checked == written
    assert log.head()[0] == written
    log.close()
    reopened = audit.AuditLog(small_tmpfs / "audit.db")
    assert reopened.verify().ok and reopened.head()[0] == written
    reopened.close()


def test_read_only_data_dir_for_new_log_raises_clear_audit_error(read_only_view) -> None:
    _, view = read_only_view
    with pytest.raises(audit.AuditError, match="read-only") as failure:
        audit.AuditLog(view / "audit.db")
    assert str(view / "audit.db") in str(failure.value)


def test_read_only_data_dir_with_existing_log_refuses_writes_keeps_records(
    read_only_view,
) -> None:
    source, view = read_only_view
    log = audit.AuditLog(source / "audit.db")
    log.append("event", {"n": 1})
    log.close()
    before = (source / "audit.db").read_bytes()
    with pytest.raises(audit.AuditError, match="read-only"):
        ro = audit.AuditLog(view / "audit.db")
        ro.append("event", {"n": 2})
    assert (source / "audit.db").read_bytes() == before
    log = audit.AuditLog(source / "audit.db")
    assert log.verify().ok and log.head()[0] == 1
    log.close()


def test_missing_data_dir_names_the_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(audit.AuditError, match="does not exist"):
        audit.AuditLog(tmp_path / "nope" / "audit.db")


def test_copy_of_open_log_is_not_needed_for_reads(tmp_path: pathlib.Path) -> None:
    """A second AuditLog on the same file (e.g. `coral audit list`) sees committed records."""
    writer = audit.AuditLog(tmp_path / "audit.db")
    writer.append("event", {"n": 1})
    reader = audit.AuditLog(tmp_path / "audit.db")
    assert [r["n"] for r in reader.list()] == [1]
    writer.append("event", {"n": 2})
    assert reader.verify().checked == 2
    reader.close()
    writer.close()
    shutil.rmtree(tmp_path / "unused", ignore_errors=True)
