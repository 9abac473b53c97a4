"""Tamper-evident, append-only audit log in its own SQLite file, keyed by a file outside it.

Each record is (seq, ts, kind, fields, prev_hash, hash) where `fields` is the canonical
JSON (sorted keys, no spaces) of the scrubbed fields and

    hash = HMAC-SHA256(key, prev_hash + canonical_json({"seq", "ts", "kind", "fields"}))

with prev_hash of record 1 = 64 zeros. The 32-byte key lives in its own file (default
`audit.key` next to the database, 0600; `key_file` puts it elsewhere), never in the
database, so someone who can write the database but does not hold the key cannot re-chain
an edited log: edits, deletions and reorderings anywhere are reported by `verify()`.

A one-row `audit_head` table holds the last seq and hash. The head is in the database, so
deleting the newest records and moving the head back passes the chain check; so does
wiping every table. Signed checkpoints written outside the data directory
(coral_lib.colony.checkpoints, `coral audit verify --checkpoints`) catch those. Someone
holding the database AND the key can rewrite the chain; checkpoints catch that too up to
the last checkpoint, as long as the checkpoint signing key and the sink are out of reach.

Logs written before keys existed (unkeyed SHA-256 chain) are migrated on first open: the
`audit_meta` row records how many records use the old rule (`legacy_until`) and the hash
of the last of them, under an HMAC of the key, and an `audit` record says so. `verify()`
checks records 1..legacy_until by the old rule, requires the last of them to match the
keyed `legacy_head`, and checks every later record by HMAC.

Every field goes through `secrets.scrub()` before it is hashed and stored.
Thread-safe: one connection and one lock; each write is one IMMEDIATE transaction, so
a failed write (disk full, read-only directory) leaves nothing half-written. Appends from
many threads at once (a fan-out's per-target records) are group-committed: whoever takes
the lock commits every record queued meanwhile in one transaction (one fsync), and each
append still returns only once its own record is durable, or raises if it is not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import hashlib
import hmac
import json
import logging
import os
import pathlib
import secrets as pysecrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Protocol

from coral_lib import errors, files
from coral_lib.colony import group_commit, secrets, storage

log = logging.getLogger(__name__)

GENESIS = "0" * 64
FINISHED_STATUSES = ("ok", "failed", "error", "timeout", "refused", "interrupted")
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
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    digest TEXT NOT NULL,
    last_record_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_replica_checkpoint (
    replica TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    digest TEXT NOT NULL,
    last_record_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_kind ON audit (kind);
CREATE INDEX IF NOT EXISTS audit_op ON audit (json_extract(fields, '$.op_id'));
"""


# Created with the first keyed open, in the same transaction as the other tables.
_META = """
CREATE TABLE audit_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key_id TEXT NOT NULL,
    legacy_until INTEGER NOT NULL,
    legacy_head TEXT NOT NULL,
    mac TEXT NOT NULL
)
"""
KEY_BYTES = 32


class AuditError(errors.CoralError):
    """The audit log could not be opened or written; nothing was half-written."""


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_id: int | None
    reason: str


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(*, prev_hash: str, seq: int, ts: float, kind: str, fields_json: str,
                key: bytes | None = None) -> str:
    """The chain hash of one record over the exact stored fields text: HMAC-SHA256 under
    `key`, or the unkeyed SHA-256 of logs written before keys (key None).

    The body is the canonical JSON of {"fields", "kind", "seq", "ts"}, built by hand so
    verifying needs no JSON parsing and any change to the stored text changes the hash.
    """
    body = (f'{{"fields":{fields_json},"kind":{_json_str(kind)},'
            f'"seq":{int(seq)},"ts":{float(ts)!r}}}')
    message = (prev_hash + body).encode()
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.digest(key, message, "sha256").hex()


def key_id(key: bytes) -> str:
    """A short public name of a key (an HMAC of a constant): which key chained a log."""
    return hmac.digest(key, b"coral-audit-key-id", "sha256").hex()[:16]


def meta_mac(key: bytes, *, legacy_until: int, legacy_head: str) -> str:
    """The HMAC that keeps the legacy boundary from being moved without the key."""
    text = f"coral-audit-legacy:{int(legacy_until)}:{legacy_head}"
    return hmac.digest(key, text.encode(), "sha256").hex()


def load_key(path: str | os.PathLike, *, create: bool = True) -> bytes:
    """The audit HMAC key from `path` (64 hex characters); created 0600 when missing."""
    path = pathlib.Path(path)
    if not path.exists() and create:
        # replace=False: never replaces a key another process made meanwhile
        files.write_atomic(path, pysecrets.token_hex(KEY_BYTES) + "\n", mode=0o600,
                           replace=False)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # a key copied in with a looser mode
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"audit key file {path}: expected {KEY_BYTES * 2} hex characters")
    return key


class CheckpointSink(Protocol):
    """Where AuditLog sends checkpoints (coral_lib.colony.checkpoints.Writer)."""

    every: int
    interval: float
    replica: str  # '' for a single colony; a replica's checkpoints are numbered on their own

    def write(self, *, seq: int, prev_digest: str, last_record_id: int, last_hmac: str,
              record_count: int, key_id: str) -> str:
        """Sign and store one checkpoint; return its digest. Raises OSError on failure."""

    def close(self) -> None:
        """Release sockets."""


def _fields_json(kind: str, fields: Mapping[str, object]) -> str:
    """The stored text of a record's fields (scrubbed, canonical); ValueError for a bad
    kind or a reserved field name."""
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"audit record kind must be a non-empty string, got {kind!r}")
    clash = sorted(set(fields) & set(RESERVED))
    if clash:
        raise ValueError(f"audit fields may not use the reserved names {clash}")
    return canonical_json(secrets.scrub(jsonable(dict(fields))))


_PG_APPEND_ROWS = 1000  # rows per statement: 6 parameters each, PostgreSQL takes 65,535


def _pg_append(rows: list[tuple], *, head: tuple[int, str]) -> list[tuple[str, tuple]]:
    """[(sql, parameters)] writing `rows` (seq, ts, kind, fields, prev_hash, hash) and
    moving the chain head to `head`: one PostgreSQL statement for up to _PG_APPEND_ROWS
    rows, the last one also moving the head (a data-modifying WITH part runs once, to
    completion; the parts write different tables)."""
    insert = "INSERT INTO audit (seq, ts, kind, fields, prev_hash, hash) VALUES "
    chunks = [rows[i:i + _PG_APPEND_ROWS] for i in range(0, len(rows), _PG_APPEND_ROWS)]
    statements = [(insert + ",".join(["(?,?,?,?,?,?)"] * len(chunk)),
                   tuple(value for row in chunk for value in row)) for chunk in chunks]
    last_sql, last_args = statements[-1]
    statements[-1] = (f"WITH added AS ({last_sql}) UPDATE audit_head SET seq = ?, hash = ? "
                      "WHERE id = 1", (*last_args, *head))
    return statements


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


def _ignore(kind: str, fields: Mapping[str, object], written: bool) -> None:
    return None


def _per_caller(batch: Sequence[list[tuple[str, str]]], seqs: list[int]) -> list[list[int]]:
    """Split the ids of a group commit's rows back into each queued caller's share."""
    shares, at = [], 0
    for rows in batch:
        shares.append(seqs[at:at + len(rows)])
        at += len(rows)
    return shares


def started_record(
    *, op_id: str, requester: str, verb: str, agent_id: str, runtime: str, service: str,
    namespace: str, pod: str, provenance: str, command: str, approval_id: str = "",
    decision_rule: str = "", node: str = "", replica: str = "",
) -> tuple[str, dict[str, str]]:
    """(kind, fields) of a `started` record (AuditLog.started), for append_all: a fan-out
    writes the records of the targets it sends at once in one transaction."""
    fields = {
        "op_id": op_id, "requester": requester, "verb": verb, "agent_id": agent_id,
        "runtime": runtime, "service": service, "namespace": namespace, "pod": pod,
        "provenance": provenance, "command": command, "approval_id": approval_id,
        "decision_rule": decision_rule, "node": node,
    }
    if replica:
        fields["replica"] = replica
    return "started", fields


class AuditLog:
    """The colony's audit log (see module docstring)."""

    def __init__(self, path: str | os.PathLike, *, clock: Callable[[], float] = time.time,
                 key_file: str | os.PathLike | None = None,
                 checkpoints: CheckpointSink | None = None) -> None:
        """key_file: the HMAC key (default audit.key next to the database, created when
        missing). checkpoints: a sink for signed checkpoints every `every` records or
        `interval` seconds and at close()."""
        self.path = os.fspath(path)
        self.key_file = os.fspath(key_file or pathlib.Path(self.path).with_name("audit.key"))
        self._clock = clock
        self._lock = threading.Lock()
        self._group = group_commit.GroupCommit(self._lock)  # appends waiting to be written
        self._sink: CheckpointSink | None = None
        self._pending = self._uncommitted = self._count = 0
        # Told of every append (kind, fields, written?): the colony's metrics count them.
        self.observer: Callable[[str, Mapping[str, object], bool], None] = _ignore
        self.checkpointed_at = float(clock())  # the last checkpoint, or since opened
        try:
            self._key = load_key(self.key_file)
        except OSError as exc:
            raise AuditError(self._explain(
                f"cannot open the audit log: audit key {self.key_file} not readable or "
                f"not creatable", exc)) from exc
        except ValueError as exc:
            raise AuditError(str(exc)) from exc
        self.key_id = key_id(self._key)
        try:
            if storage.is_file(self.path):
                storage.private_db(self.path)
            self._db = storage.connect(self.path, store="audit")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._write(self._open_schema)
            self._count = self._db.execute("SELECT count(*) FROM audit").fetchone()[0]
        except (sqlite3.Error, OSError) as exc:
            raise AuditError(self._explain("cannot open the audit log", exc)) from exc
        except AuditError as exc:
            raise AuditError(str(exc).replace("audit record not written",
                                              "cannot open the audit log")) from exc
        self._sink = checkpoints
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        if checkpoints is not None:
            covered = self._checkpoint_state()[2]
            self._pending = max(0, self.head()[0] - covered)
            self._timer = threading.Thread(target=self._checkpoint_loop, daemon=True,
                                           name="audit-checkpoints")
            self._timer.start()

    def _open_schema(self) -> None:
        """Tables; on the first keyed open of an older log, seal its unkeyed records."""
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_meta'"
        ).fetchone()
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)
        if has_meta:
            (stored,) = self._db.execute("SELECT key_id FROM audit_meta WHERE id = 1"
                                         ).fetchone() or ("",)
            if stored and stored != self.key_id:  # e.g. a replica with its own key
                raise AuditError(
                    f"cannot open the audit log: it is chained with audit key {stored}, but "
                    f"{self.key_file} holds key {self.key_id}; every colony replica needs "
                    "the same audit key (copy the data directory after `coral colony init`)")
            return
        legacy_until, legacy_head = self._db.execute(
            "SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        self._db.execute(_META)
        self._db.execute(
            "INSERT INTO audit_meta (id, key_id, legacy_until, legacy_head, mac) "
            "VALUES (1, ?, ?, ?, ?)",
            (self.key_id, legacy_until, legacy_head,
             meta_mac(self._key, legacy_until=legacy_until, legacy_head=legacy_head)))
        if legacy_until:
            log.warning("audit: %s holds %d records chained without a key; sealed them under "
                        "key %s (records after %d are HMAC-chained)", self.path, legacy_until,
                        self.key_id, legacy_until)
            self._insert("audit", canonical_json({
                "event": "keyed", "legacy_records": legacy_until, "key_id": self.key_id}))

    # -- writing -------------------------------------------------------------------------

    def append(self, kind: str, fields: Mapping[str, object]) -> int:
        """Append one record; return its id (seq)."""
        return self.append_all([(kind, fields)])[0]

    def append_all(self, records: Sequence[tuple[str, Mapping[str, object]]]) -> list[int]:
        """Append (kind, fields) records in this order, all in one transaction (one fsync)
        or none; return their ids."""
        rows = [(kind, _fields_json(kind, fields)) for kind, fields in records]
        try:
            seqs = self._group.submit(rows, self._commit_group)
        except AuditError:
            for kind, fields in records:
                self.observer(kind, fields, False)
            raise
        for kind, fields in records:
            self.observer(kind, fields, True)
        return seqs

    def _commit_group(self, batch: Sequence[list[tuple[str, str]]]
                      ) -> list[list[int] | AuditError]:
        """The queued callers' records (group_commit, lock held) in one transaction: each
        caller's ids, or, when that transaction fails, the error for every one of them (a
        record is never reported written before its transaction commits)."""
        try:
            return self._write(lambda: _per_caller(
                batch, self._insert_many([row for rows in batch for row in rows])),
                pipelined=True)
        except Exception as exc:  # noqa: BLE001 - every queued caller must hear it
            error = exc if isinstance(exc, AuditError) else AuditError(
                f"audit record not written: {exc}")
            return [error] * len(batch)

    def started(
        self, *, op_id: str, requester: str, verb: str, agent_id: str, runtime: str,
        service: str, namespace: str, pod: str, provenance: str, command: str,
        approval_id: str = "", decision_rule: str = "", node: str = "", replica: str = "",
    ) -> int:
        """The record written before an operation runs on one target. `replica`: the colony
        replica running it (replicas on PostgreSQL), so survivors can close it if it dies."""
        return self.append(*started_record(
            op_id=op_id, requester=requester, verb=verb, agent_id=agent_id, runtime=runtime,
            service=service, namespace=namespace, pod=pod, provenance=provenance,
            command=command, approval_id=approval_id, decision_rule=decision_rule, node=node,
            replica=replica))

    def finished(
        self, *, op_id: str, status: str, exit_code: int | None, duration: float,
        bytes_out: int, error: str = "", entered: Mapping[str, object] | None = None,
    ) -> int:
        """The end record of an operation: status ok|failed|error|timeout|refused.
        `entered` (what the agent entered, colony.targets.entered_fields) is written just
        before it, in the same transaction: one fsync for both once the command ran."""
        if status not in FINISHED_STATUSES:
            raise ValueError(f"finished status {status!r}: expected one of {FINISHED_STATUSES}")
        end = ("finished", {
            "op_id": op_id, "status": status, "exit_code": exit_code, "duration": duration,
            "bytes_out": bytes_out, "error": error,
        })
        return self.append_all([("entered", entered), end] if entered else [end])[-1]

    def refused(
        self, *, requester: str, verb: str, target: str, command: str, reason: str, rule: str
    ) -> int:
        """A request refused before it ran (RBAC, observe-only, rate limit, approval)."""
        return self.append("refused", {
            "requester": requester, "verb": verb, "target": target, "command": command,
            "reason": reason, "rule": rule,
        })

    def discovery(self, fields: Mapping[str, object]) -> int:
        """One change to an agent's service set (colony.discovery_record.fields: one record
        per registration), group-committed with whatever else is appended meanwhile: one
        fsync and at most one checkpoint for many registrations at once."""
        return self.append("discovery", fields)

    def mark_interrupted(self) -> int:
        """Close every started operation that has no end record (call at colony start)."""
        return self._close_open(
            "", error="the colony stopped before the operation finished; found at restart")

    def mark_interrupted_for(self, replica: str, *, error: str) -> int:
        """Close the open operations that colony replica `replica` started (it died or
        restarted); run by whichever replica notices, once: a second call finds none."""
        if not replica:
            raise ValueError("mark_interrupted_for needs a replica name")
        return self._close_open(replica, error=error)

    def _close_open(self, replica: str, *, error: str) -> int:
        where_replica = "AND json_extract(fields, '$.replica') = ?" if replica else ""
        query = f"""
            SELECT json_extract(fields, '$.op_id') FROM audit WHERE kind = 'started'
            {where_replica}
            AND json_extract(fields, '$.op_id') NOT IN (
                SELECT json_extract(fields, '$.op_id') FROM audit
                WHERE kind = 'finished' AND json_extract(fields, '$.op_id') IS NOT NULL)
            ORDER BY seq
        """

        def work() -> int:
            open_ops = [row[0] for row in self._db.execute(query, (replica,) if replica else ())]
            for op_id in dict.fromkeys(open_ops):
                fields = {"op_id": op_id, "status": "interrupted", "exit_code": None,
                          "duration": None, "bytes_out": None, "error": error}
                self._insert("finished", canonical_json(secrets.scrub(fields)))
            return len(dict.fromkeys(open_ops))

        with self._lock:
            return self._write(work)

    def _insert(self, kind: str, fields_json: str) -> int:
        return self._insert_many([(kind, fields_json)])[0]

    def _insert_many(self, records: list[tuple[str, str]]) -> list[int]:
        """Chain `records` (kind, fields json) after the head in three statements, however
        many there are (a group commit of many callers' records costs no more round trips to
        PostgreSQL than one). Called inside the write transaction."""
        if not records:
            return []
        prev_seq, prev_hash = self._db.execute(
            "SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        rows = []
        for kind, fields_json in records:
            seq, ts = prev_seq + 1, float(self._clock())
            digest = record_hash(prev_hash=prev_hash, seq=seq, ts=ts, kind=kind,
                                 fields_json=fields_json, key=self._key)
            rows.append((seq, ts, kind, fields_json, prev_hash, digest))
            prev_seq, prev_hash = seq, digest
        if storage.is_file(self.path):
            self._db.executemany(
                "INSERT INTO audit (seq, ts, kind, fields, prev_hash, hash) VALUES (?,?,?,?,?,?)",
                rows)
            self._db.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1",
                             (prev_seq, prev_hash))
        else:  # one statement: each costs the colony and PostgreSQL a round of work
            for statement in _pg_append(rows, head=(prev_seq, prev_hash)):
                self._db.execute(*statement)
        self._uncommitted += len(rows)
        return [row[0] for row in rows]

    def _write(self, work: Callable[[], object], *, pipelined: bool = False) -> object:
        """Run `work` in one IMMEDIATE transaction; roll back everything on failure.
        Called with the lock held; writes a checkpoint when one is due. `pipelined` (an
        append: one read of the head, then writes): on PostgreSQL the lock and the head
        read take one round trip and the inserts plus COMMIT one more (pgsql.pipeline),
        so the chain's cross-replica lock is held for about one round trip, not five."""
        self._uncommitted = 0
        pipeline = (self._db.pipeline() if pipelined and not storage.is_file(self.path)
                    else contextlib.nullcontext())
        try:
            with pipeline:
                self._db.execute("BEGIN IMMEDIATE")
                result = work()
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise AuditError(self._explain("audit record not written", exc)) from exc
        self._count += self._uncommitted
        self._pending += self._uncommitted
        if self._sink is not None and self._pending >= self._sink.every:
            self._checkpoint_locked()
        return result

    # -- checkpoints ---------------------------------------------------------------------

    def checkpoint(self) -> bool:
        """Write a checkpoint now when records were added since the last one."""
        with self._lock:
            return self._checkpoint_locked()

    def _checkpoint_locked(self) -> bool:
        if self._sink is None or not self._pending:
            return False
        try:
            last_id, last_hash = self._db.execute(
                "SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            prev = self._checkpoint_state()
            digest = self._sink.write(seq=prev[0] + 1, prev_digest=prev[1],
                                      last_record_id=last_id, last_hmac=last_hash,
                                      record_count=self._count, key_id=self.key_id)
            self._store_checkpoint_state(prev[0] + 1, digest, last_id)
        except (OSError, sqlite3.Error) as exc:
            # The records are stored; the next append or tick tries again.
            log.error("audit checkpoint not written: %s", exc)
            return False
        self._pending = 0
        self.checkpointed_at = float(self._clock())
        return True

    def _checkpoint_state(self) -> tuple[int, str, int]:
        """(seq, digest, last record id) of this colony's last checkpoint, (0, '', 0) before
        the first. A replica keeps its own row: replicas share the log, not the numbering."""
        replica = getattr(self._sink, "replica", "")
        row = (self._db.execute("SELECT seq, digest, last_record_id FROM "
                                "audit_replica_checkpoint WHERE replica = ?", (replica,))
               if replica else self._db.execute(
                   "SELECT seq, digest, last_record_id FROM audit_checkpoint WHERE id = 1")
               ).fetchone()
        return tuple(row) if row else (0, "", 0)

    def _store_checkpoint_state(self, seq: int, digest: str, last_record_id: int) -> None:
        replica = getattr(self._sink, "replica", "")
        if replica:
            self._db.execute(
                "INSERT INTO audit_replica_checkpoint (replica, seq, digest, last_record_id) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (replica) DO UPDATE SET seq = excluded.seq, "
                "digest = excluded.digest, last_record_id = excluded.last_record_id",
                (replica, seq, digest, last_record_id))
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO audit_checkpoint (id, seq, digest, last_record_id) "
                "VALUES (1, ?, ?, ?)", (seq, digest, last_record_id))

    @property
    def since_checkpoint(self) -> int:
        """Records written since the last checkpoint (none: no sink, or all covered)."""
        return self._pending if self._sink is not None else 0

    def _checkpoint_loop(self) -> None:
        while not self._stop.wait(self._sink.interval):
            self.checkpoint()

    def _explain(self, what: str, exc: sqlite3.Error | OSError) -> str:
        return storage.explain(what, self.path, exc)

    # -- reading -------------------------------------------------------------------------

    def list(
        self, *, kind: str | None = None, requester: str | None = None,
        agent_id: str | None = None, op_id: str | None = None, since: float | None = None,
        after_id: int | None = None, limit: int = 1000, tail: bool = False,
    ) -> list[dict]:
        """Matching records, oldest first: the first `limit` of them (page with since or
        after_id), or with `tail=True` the newest `limit`. Empty strings filter nothing
        (proto3 defaults). `op_id` matches an operation's records: its own id and every
        per-target key `<op_id>/<agent>/<pod>/<container>` under it."""
        where, args = ["1=1"], []
        for column, value in (("kind", kind), ("json_extract(fields, '$.requester')", requester),
                              ("json_extract(fields, '$.agent_id')", agent_id)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if op_id:  # an operation's id (what Operate returns) or one target's key under it
            where.append("(json_extract(fields, '$.op_id') = ? OR "
                         "substr(json_extract(fields, '$.op_id'), 1, ?) = ?)")
            args.extend((op_id, len(op_id) + 1, op_id + "/"))
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
        """(last seq, last hash): what the next checkpoint anchors outside the database."""
        with self._lock:
            return tuple(self._read("SELECT seq, hash FROM audit_head WHERE id = 1", ())[0])

    def verify(self) -> VerifyResult:
        """Walk the chain in seq order; report the first modified, missing or moved record.

        Reads through its own connection inside one read transaction: a consistent WAL
        snapshot, streamed in batches, while appends carry on.
        """
        return verify_file(self.path, self._key)

    def _read(self, sql: str, args: tuple) -> list[tuple]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise AuditError(self._explain("cannot read the audit log", exc)) from exc

    def close(self) -> None:
        """Write a last checkpoint (clean shutdown) and close the database."""
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=10)
        with self._lock:
            self._checkpoint_locked()
            self._db.close()
        if self._sink is not None:
            self._sink.close()


def verify_file(path: str | os.PathLike, key: bytes,
                on_row: Callable[[tuple], None] | None = None) -> VerifyResult:
    """Verify the audit database at `path` with `key` (see AuditLog.verify); `on_row` sees
    every row read, in seq order (checkpoint checks ride along the same pass)."""
    path = os.fspath(path)
    if storage.is_file(path) and not os.path.exists(path):
        raise AuditError(f"cannot read the audit log ({path}): no such file")
    try:
        reader = storage.connect(path, store="audit-reader")
    except sqlite3.Error as exc:
        raise AuditError(storage.explain("cannot read the audit log", path, exc)) from exc
    try:
        reader.execute("BEGIN")
        head = reader.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        meta = _read_meta(reader)
        cursor = reader.execute(
            "SELECT seq, ts, kind, fields, prev_hash, hash FROM audit ORDER BY seq")
        rows = _batches(cursor)
        if on_row is not None:
            rows = _tee(rows, on_row)
        if isinstance(meta, str):
            for _ in rows:  # still feed on_row: checkpoints check the stored hashes
                pass
            return VerifyResult(False, 0, None, meta)
        legacy_until, legacy_head, stored_key_id, mac = meta
        if stored_key_id != key_id(key):
            return VerifyResult(False, 0, None, (
                f"this log was chained with audit key {stored_key_id}, not with the given key "
                f"{key_id(key)}: verify with the colony's audit key"))
        if not hmac.compare_digest(meta_mac(key, legacy_until=legacy_until,
                                            legacy_head=legacy_head), mac):
            return VerifyResult(False, 0, None, "the audit_meta row was modified (its HMAC "
                                "does not match): the legacy boundary cannot be trusted")
        result = verify_rows(rows, head, key=key, legacy_until=legacy_until,
                             legacy_head=legacy_head)
        for _ in rows:  # after a bad record, on_row still sees the rest
            pass
        return result
    except sqlite3.Error as exc:
        raise AuditError(storage.explain("cannot read the audit log", path, exc)) from exc
    finally:
        reader.close()


def _read_meta(db: sqlite3.Connection) -> tuple | str:
    """(legacy_until, legacy_head, key_id, mac), or why the row cannot be used."""
    try:
        row = db.execute(
            "SELECT legacy_until, legacy_head, key_id, mac FROM audit_meta WHERE id = 1"
        ).fetchone()
    except sqlite3.OperationalError:
        return "the audit_meta table is missing (dropped, or the log was never keyed)"
    if row is None:
        return "the audit_meta row is missing (deleted)"
    legacy_until, legacy_head, stored_key_id, mac = row
    if not (isinstance(legacy_until, int) and all(
            isinstance(v, str) for v in (legacy_head, stored_key_id, mac))):
        return "the audit_meta row holds unreadable values (modified)"
    return legacy_until, legacy_head, stored_key_id, mac


def _tee(rows: Iterable[tuple], on_row: Callable[[tuple], None]) -> Iterable[tuple]:
    for row in rows:
        on_row(row)
        yield row


def verify_rows(rows: Iterable[tuple], head: tuple[int, str] | None, *,
                key: bytes | None = None, legacy_until: int = 0,
                legacy_head: str = "") -> VerifyResult:
    """Check (seq, ts, kind, fields, prev_hash, hash) rows in seq order against `head`.

    Records 1..legacy_until follow the unkeyed rule and the last of them must hash to
    `legacy_head`; later ones are HMACs under `key` (key None: every record unkeyed).
    """
    expected_seq, prev, checked = 1, GENESIS, 0
    for seq, ts, kind, fields_json, prev_hash, digest in rows:
        keyed = key is not None and expected_seq > legacy_until
        problem = _check_row(expected_seq=expected_seq, prev=prev, key=key if keyed else None,
                             row=(seq, ts, kind, fields_json, prev_hash, digest))
        if not problem and key is not None and seq == legacy_until and digest != legacy_head:
            problem = (f"record {seq}: the last unkeyed record does not match the hash sealed "
                       f"under the key (the unkeyed records were rewritten)")
        if problem:
            # Rows come in seq order, so the first bad id is the one expected here.
            return VerifyResult(False, checked, expected_seq, problem)
        expected_seq, prev, checked = seq + 1, digest, checked + 1
    if key is not None and legacy_until >= expected_seq:
        return VerifyResult(False, checked, expected_seq,
                            f"the log ends at {expected_seq - 1} but {legacy_until} unkeyed "
                            f"records were sealed (records deleted)")
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


def _check_row(*, expected_seq: int, prev: str, row: tuple, key: bytes | None = None) -> str:
    seq, ts, kind, fields_json, prev_hash, digest = row
    if seq != expected_seq:
        return f"record {expected_seq} is missing (next stored record is {seq}): deleted"
    if prev_hash != prev:
        return f"record {seq}: prev_hash does not match record {seq - 1} (deleted or reordered)"
    try:
        expected = record_hash(prev_hash=prev_hash, seq=seq, ts=ts, kind=kind,
                               fields_json=fields_json, key=key)
        if expected != digest and key is not None and digest == record_hash(
                prev_hash=prev_hash, seq=seq, ts=ts, kind=kind, fields_json=fields_json):
            return (f"record {seq}: hash is the unkeyed SHA-256 of its content, not its HMAC "
                    f"(re-chained without the key)")
    except (TypeError, ValueError) as exc:
        return f"record {seq}: unreadable values ({exc})"
    if expected != digest:
        what = "HMAC" if key is not None else "hash"
        return f"record {seq}: content does not match its {what} (modified)"
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
