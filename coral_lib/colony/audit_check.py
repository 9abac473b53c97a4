"""Verify an audit database file against signed checkpoints, without a running colony.

The one home of `coral audit verify --checkpoints` and of `coral colony restore`'s check
before it installs a backup: the HMAC chain (audit.verify_file) and the checkpoints
(checkpoints.verify) in one pass over the records.
"""

from __future__ import annotations

import os
import pathlib
import sqlite3
from collections.abc import Sequence

from coral_lib.colony import audit, checkpoints, storage


def newest_record(audit_db: str | os.PathLike) -> int:
    """The highest record id in the database (0 when empty or unreadable). `audit_db` is
    a SQLite file or a dsn.Dsn (a PostgreSQL colony's, or one a restore just filled)."""
    try:
        db = (sqlite3.connect(f"file:{os.fspath(audit_db)}?mode=ro", uri=True)
              if storage.is_file(audit_db) else storage.connect(audit_db, store="audit-reader"))
        try:
            row = db.execute("SELECT max(seq) FROM audit").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return 0
    return int(row[0] or 0)


def verify_local(*, audit_db: str | os.PathLike, audit_key_file: str | os.PathLike,
                 public_key_file: str | os.PathLike | Sequence[str | os.PathLike],
                 checkpoints_path: str | os.PathLike | Sequence[str | os.PathLike],
                 prefix_only: bool = False) -> checkpoints.Report:
    """Check `audit_db` (a SQLite file or a dsn.Dsn) with its HMAC key against the
    checkpoints at `checkpoints_path`: one sink, or several (every replica's sink of a
    colony on PostgreSQL), each checked as its replica's own chain against the same log.
    `public_key_file`: one checkpoint public key, or several (replicas started before
    `coral colony init` made the one shared key each made their own); a checkpoint must
    verify with one of them.

    prefix_only: the database is a copy taken earlier (a backup): checkpoints signed after
    its newest record cover records the copy cannot hold and are left out, rather than
    reported as a truncated tail. Every checkpoint up to the copy's end must still match.
    Raises OSError / ValueError / audit.AuditError when a file cannot be read."""
    key = audit.load_key(audit_key_file, create=False)
    public = [checkpoints.load_public_key(path) for path in _listed(public_key_file)]
    found, problems, origin = checkpoints.read_sinks(_listed(checkpoints_path))
    if prefix_only:
        last = newest_record(audit_db)
        covering = [cp for cp in found if _record_id(cp) <= last]
        if found and not covering:
            problems = [*problems, (
                f"no checkpoint covers the copy's {last} records (the first checkpoint covers "
                f"record {min(_record_id(cp) for cp in found)}): the copy was taken before "
                f"any checkpoint, or its log was cut")]
        found = covering
    return checkpoints.verify(
        checkpoints=found, public=public, key_id=audit.key_id(key), read_problems=problems,
        origin=origin, chain=lambda on_row: audit.verify_file(
            audit_db if not storage.is_file(audit_db) else pathlib.Path(audit_db), key,
            on_row))


def _listed(value: str | os.PathLike | Sequence[str | os.PathLike]) -> list:
    return [value] if isinstance(value, str | os.PathLike) else list(value)


def _record_id(checkpoint: dict) -> int:
    try:
        return int(checkpoint.get("last_record_id", 0))
    except (TypeError, ValueError):
        return 0  # kept: checkpoints.verify reports what is wrong with it
