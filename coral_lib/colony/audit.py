"""Tamper-evident, append-only audit log in its own SQLite file.

Each record is (seq, ts, kind, fields, prev_hash, hash) where `fields` is the canonical
JSON (sorted keys, no spaces) of the scrubbed fields and

    hash = sha256(prev_hash + canonical_json({"seq", "ts", "kind", "fields"}))

with prev_hash of record 1 = 64 zeros. A one-row `audit_head` table holds the last seq
and hash and is updated in the same transaction as every append, so deleting or editing
the newest records (truncating the tail) is detected as well as edits, deletions and
reorderings in the middle. `verify()` reports the first bad record.

What this does not stop: someone with write access who rewrites every hash from the
edited record on, head included. Anchor `head()` elsewhere (a ticket, a log shipper)
to catch that too.

Every field goes through `secrets.scrub()` before it is hashed and stored.
Thread-safe: one connection and one lock; each append is one IMMEDIATE transaction, so
a failed write (disk full, read-only directory) leaves nothing half-written.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import IO

from coral_lib.colony import secrets, storage

GENESIS = "0" * 64
FINISHED_STATUSES = ("ok", "failed", "error", "timeout", "refused", "interrupted")
DISCOVERY_EVENTS = ("added", "removed", "overridden")
RESERVED = ("id", "ts", "kind", "prev_hash", "hash")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    fields TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT OR IGNORE INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS}');
CREATE INDEX IF NOT EXISTS audit_kind ON audit (kind);
CREATE INDEX IF NOT EXISTS audit_op ON audit (json_extract(fields, '$.op_id'));
"""


class AuditError(Exception):
    """The audit log could not be opened or written; nothing was half-written."""


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_id: int | None
    reason: str


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(*, prev_hash: str, seq: int, ts: float, kind: str, fields_json: str) -> str:
    """The chain hash of one record over the exact stored fields text.

    The body is the canonical JSON of {"fields", "kind", "seq", "ts"}, built by hand so
    verifying needs no JSON parsing and any change to the stored text changes the hash.
    """
    body = (f'{{"fields":{fields_json},"kind":{_json_str(kind)},'
            f'"seq":{int(seq)},"ts":{float(ts)!r}}}')
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


@functools.lru_cache(maxsize=256)
def _json_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def jsonable(value: object) -> object:
    """Plain JSON data from enums (by name), dataclasses, mappings and sequences."""
    if isinstance(value, enum.Enum):
        return value.name
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class AuditLog:
    """The colony's audit log (see module docstring)."""

    def __init__(self, path: str | os.PathLike, *, clock: Callable[[], float] = time.time) -> None:
        self.path = os.fspath(path)
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise AuditError(self._explain("cannot open the audit log", exc)) from exc

    # -- writing -------------------------------------------------------------------------

    def append(self, kind: str, fields: Mapping[str, object]) -> int:
        """Append one record; return its id (seq)."""
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"audit record kind must be a non-empty string, got {kind!r}")
        clash = sorted(set(fields) & set(RESERVED))
        if clash:
            raise ValueError(f"audit fields may not use the reserved names {clash}")
        fields_json = canonical_json(secrets.scrub(jsonable(dict(fields))))
        with self._lock:
            return self._write(lambda: self._insert(kind, fields_json))

    def started(
        self, *, op_id: str, requester: str, verb: str, agent_id: str, runtime: str,
        service: str, namespace: str, pod: str, provenance: str, command: str,
        approval_id: str = "", decision_rule: str = "",
    ) -> int:
        """The record written before an operation runs on one target."""
        return self.append("started", {
            "op_id": op_id, "requester": requester, "verb": verb, "agent_id": agent_id,
            "runtime": runtime, "service": service, "namespace": namespace, "pod": pod,
            "provenance": provenance, "command": command, "approval_id": approval_id,
            "decision_rule": decision_rule,
        })

    def finished(
        self, *, op_id: str, status: str, exit_code: int | None, duration: float,
        bytes_out: int, error: str = "",
    ) -> int:
        """The end record of an operation: status ok|failed|error|timeout|refused."""
        if status not in FINISHED_STATUSES:
            raise ValueError(f"finished status {status!r}: expected one of {FINISHED_STATUSES}")
        return self.append("finished", {
            "op_id": op_id, "status": status, "exit_code": exit_code, "duration": duration,
            "bytes_out": bytes_out, "error": error,
        })

    def refused(
        self, *, requester: str, verb: str, target: str, command: str, reason: str, rule: str
    ) -> int:
        """A request refused before it ran (RBAC, observe-only, rate limit, approval)."""
        return self.append("refused", {
            "requester": requester, "verb": verb, "target": target, "command": command,
            "reason": reason, "rule": rule,
        })

    def discovery(self, *, event: str, agent_id: str, service: Mapping[str, object]) -> int:
        """A change in an agent's service set (event added|removed|overridden)."""
        return self.discoveries(agent_id=agent_id, events=[(event, service)])[-1]

    def discoveries(self, *, agent_id: str,
                    events: list[tuple[str, Mapping[str, object]]]) -> list[int]:
        """Many discovery records in one transaction (one fsync for a whole registration)."""
        for event, _ in events:
            if event not in DISCOVERY_EVENTS:
                raise ValueError(f"discovery event {event!r}: expected one of {DISCOVERY_EVENTS}")
        rows = [canonical_json(secrets.scrub(jsonable(
            {"event": event, "agent_id": agent_id, "service": service})))
            for event, service in events]
        if not rows:
            return []
        with self._lock:
            return self._write(lambda: [self._insert("discovery", row) for row in rows])

    def mark_interrupted(self) -> int:
        """Close every started operation that has no end record (call at colony start)."""
        query = """
            SELECT json_extract(fields, '$.op_id') FROM audit WHERE kind = 'started'
            AND json_extract(fields, '$.op_id') NOT IN (
                SELECT json_extract(fields, '$.op_id') FROM audit
                WHERE kind = 'finished' AND json_extract(fields, '$.op_id') IS NOT NULL)
            ORDER BY seq
        """
        error = "the colony stopped before the operation finished; found at restart"

        def work() -> int:
            open_ops = [row[0] for row in self._db.execute(query)]
            for op_id in dict.fromkeys(open_ops):
                fields = {"op_id": op_id, "status": "interrupted", "exit_code": None,
                          "duration": None, "bytes_out": None, "error": error}
                self._insert("finished", canonical_json(secrets.scrub(fields)))
            return len(dict.fromkeys(open_ops))

        with self._lock:
            return self._write(work)

    def _insert(self, kind: str, fields_json: str) -> int:
        last_seq, last_hash = self._db.execute(
            "SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        seq, ts = last_seq + 1, float(self._clock())
        digest = record_hash(prev_hash=last_hash, seq=seq, ts=ts, kind=kind,
                             fields_json=fields_json)
        self._db.execute(
            "INSERT INTO audit (seq, ts, kind, fields, prev_hash, hash) VALUES (?,?,?,?,?,?)",
            (seq, ts, kind, fields_json, last_hash, digest))
        self._db.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, digest))
        return seq

    def _write(self, work: Callable[[], object]) -> object:
        """Run `work` in one IMMEDIATE transaction; roll back everything on failure."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            result = work()
            self._db.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise AuditError(self._explain("audit record not written", exc)) from exc

    def _explain(self, what: str, exc: sqlite3.Error) -> str:
        return storage.explain(what, self.path, exc)

    # -- reading -------------------------------------------------------------------------

    def list(
        self, *, kind: str | None = None, requester: str | None = None,
        agent_id: str | None = None, op_id: str | None = None, since: float | None = None,
        after_id: int | None = None, limit: int = 1000, tail: bool = False,
    ) -> list[dict]:
        """Matching records, oldest first: the first `limit` of them (page with since or
        after_id), or with `tail=True` the newest `limit`. Empty strings filter nothing
        (proto3 defaults)."""
        where, args = ["1=1"], []
        for column, value in (("kind", kind), ("json_extract(fields, '$.requester')", requester),
                              ("json_extract(fields, '$.agent_id')", agent_id),
                              ("json_extract(fields, '$.op_id')", op_id)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if since:
            where.append("ts >= ?")
            args.append(float(since))
        if after_id is not None:
            where.append("seq > ?")
            args.append(int(after_id))
        sql = (f"SELECT seq, ts, kind, fields, prev_hash, hash FROM audit "
               f"WHERE {' AND '.join(where)} ORDER BY seq {'DESC' if tail else ''} LIMIT ?")
        with self._lock:
            rows = self._read(sql, (*args, max(0, int(limit))))
        return [_as_dict(row) for row in (reversed(rows) if tail else rows)]

    def head(self) -> tuple[int, str]:
        """(last seq, last hash): anchor this outside the database to catch full rewrites."""
        with self._lock:
            return tuple(self._read("SELECT seq, hash FROM audit_head WHERE id = 1", ())[0])

    def verify(self) -> VerifyResult:
        """Walk the chain in seq order; report the first modified, missing or moved record.

        Reads through its own connection inside one read transaction: a consistent WAL
        snapshot, streamed in batches, while appends carry on.
        """
        try:
            reader = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise AuditError(self._explain("cannot read the audit log", exc)) from exc
        try:
            reader.execute("BEGIN")
            head = reader.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            cursor = reader.execute(
                "SELECT seq, ts, kind, fields, prev_hash, hash FROM audit ORDER BY seq")
            return verify_rows(_batches(cursor), head)
        except sqlite3.Error as exc:
            raise AuditError(self._explain("cannot read the audit log", exc)) from exc
        finally:
            reader.close()

    def _read(self, sql: str, args: tuple) -> list[tuple]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise AuditError(self._explain("cannot read the audit log", exc)) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()


def verify_rows(rows: Iterable[tuple], head: tuple[int, str] | None) -> VerifyResult:
    """Check (seq, ts, kind, fields, prev_hash, hash) rows in seq order against `head`."""
    expected_seq, prev, checked = 1, GENESIS, 0
    for seq, ts, kind, fields_json, prev_hash, digest in rows:
        problem = _check_row(expected_seq=expected_seq, prev=prev, row=(
            seq, ts, kind, fields_json, prev_hash, digest))
        if problem:
            # Rows come in seq order, so the first bad id is the one expected here.
            return VerifyResult(False, checked, expected_seq, problem)
        expected_seq, prev, checked = seq + 1, digest, checked + 1
    if head is None:
        return VerifyResult(False, checked, None, "the audit_head row is missing")
    head_seq, head_hash = head
    if head_seq != expected_seq - 1:
        first_bad = min(head_seq, expected_seq - 1) + 1
        return VerifyResult(False, checked, first_bad,
                            f"head says the last record is {head_seq} but the log ends at "
                            f"{expected_seq - 1} (records deleted or added at the tail)")
    if head_hash != prev:
        return VerifyResult(False, checked, head_seq or None,
                            f"record {head_seq} does not match the hash in audit_head")
    return VerifyResult(True, checked, None, f"{checked} records, chain intact")


def _check_row(*, expected_seq: int, prev: str, row: tuple) -> str:
    seq, ts, kind, fields_json, prev_hash, digest = row
    if seq != expected_seq:
        return f"record {expected_seq} is missing (next stored record is {seq})"
    if prev_hash != prev:
        return f"record {seq}: prev_hash does not match record {seq - 1} (deleted or reordered)"
    try:
        expected = record_hash(prev_hash=prev_hash, seq=seq, ts=ts, kind=kind,
                               fields_json=fields_json)
    except (TypeError, ValueError) as exc:
        return f"record {seq}: unreadable values ({exc})"
    if expected != digest:
        return f"record {seq}: content does not match its hash (modified)"
    return ""


def _batches(cursor: sqlite3.Cursor, size: int = 2000) -> Iterable[tuple]:
    while rows := cursor.fetchmany(size):
        yield from rows


def _as_dict(row: tuple) -> dict:
    seq, ts, kind, fields_json, prev_hash, digest = row
    record = json.loads(fields_json)
    record.update(id=seq, ts=ts, kind=kind, prev_hash=prev_hash, hash=digest)
    return record


def export_jsonl(records: Iterable[Mapping[str, object]], file: IO[str]) -> int:
    """Write records as JSON lines (sorted keys); return how many were written."""
    count = 0
    for record in records:
        file.write(canonical_json(dict(record)) + "\n")
        count += 1
    return count
