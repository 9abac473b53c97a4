"""The PostgreSQL backend: a connection shaped like the sqlite3 one the colony's stores use.

The stores (registry, audit, approvals, enrollment) speak one SQL text, written for SQLite.
`translate()` (pure, cached) rewrites the few SQLite-only forms for PostgreSQL:

* `?` placeholders -> `%s`; `json_extract(col, '$.k')` -> `(col::jsonb ->> 'k')`;
* `INSERT OR IGNORE` -> `ON CONFLICT DO NOTHING`; `INSERT OR REPLACE` -> `ON CONFLICT
  (primary key) DO UPDATE` (`upsert()`, with the table's columns and key from the catalog);
* DDL types: BLOB -> BYTEA, REAL -> DOUBLE PRECISION, INTEGER -> BIGINT, TEXT sorts
  bytewise (COLLATE "C", as in SQLite, whatever the database's locale);
* `PRAGMA table_info(t)` / `sqlite_master` -> information_schema; other PRAGMAs -> no-op;
* `BEGIN IMMEDIATE` (SQLite's one-writer-per-file lock) -> BEGIN plus a transaction-scoped
  advisory lock named after the store, so writers of one store are serialized across every
  replica exactly as they were inside one SQLite file (`begin_keyed()`: a writer of one
  agent's rows takes that lock shared and a lock of its own key). That is what keeps the audit log
  one HMAC chain when several colony replicas append: each append reads the chain head and
  writes the next record under that lock. A plain `BEGIN` (a reader) is REPEATABLE READ,
  one snapshot like SQLite's WAL read transaction.

Errors come out as sqlite3 exception classes (the stores classify by class, never by
message) with the DSN's password never in the message.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Sequence

import psycopg
import psycopg.errors
import psycopg.sql

from coral_lib.colony import dsn as dsn_mod


class _Postgres:
    postgresql = True  # storage.explain() names the backend


class IntegrityError(_Postgres, sqlite3.IntegrityError):
    pass


class OperationalError(_Postgres, sqlite3.OperationalError):
    pass


class DatabaseError(_Postgres, sqlite3.DatabaseError):
    pass


def lock_key(name: str) -> int:
    """A stable 32-bit advisory lock id for a store name."""
    return zlib.crc32(f"coral:{name}".encode())


_JSON = re.compile(r"json_extract\((\w+),\s*'\$\.(\w+)'\)")
_DDL_TYPES = ((re.compile(r"\bBLOB\b"), "BYTEA"), (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
              (re.compile(r"\bINTEGER\b"), "BIGINT"), (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"'))
_REPLACE = re.compile(r"\s*INSERT OR REPLACE INTO (\w+)\s*(?:\(([^)]*)\))?\s*(VALUES.*)",
                      re.DOTALL | re.IGNORECASE)
_PRAGMA_INFO = re.compile(r"PRAGMA table_info\((\w+)\)")
_MASTER = re.compile(r"FROM sqlite_master WHERE type = 'table' AND name = '(\w+)'")


@functools.lru_cache(maxsize=512)
def translate(sql: str, store: str = "") -> tuple[str, ...]:
    """SQLite-dialect `sql` as the PostgreSQL statement(s) doing the same."""
    text = sql.strip().rstrip(";")
    upper = text.upper()
    if upper == "BEGIN IMMEDIATE":
        return ("BEGIN", f"SELECT pg_advisory_xact_lock({lock_key(store)})")
    if upper == "BEGIN":
        return ("BEGIN ISOLATION LEVEL REPEATABLE READ",)
    if match := _PRAGMA_INFO.fullmatch(text):
        return ("SELECT ordinal_position - 1, column_name FROM information_schema.columns "
                f"WHERE table_schema = current_schema() AND table_name = '{match[1]}' "
                "ORDER BY ordinal_position",)
    if upper.startswith("PRAGMA"):
        return ()
    text = _MASTER.sub(r"FROM information_schema.tables WHERE table_schema = "
                       r"current_schema() AND table_name = '\1'", text)
    text = _JSON.sub(r"(\1::jsonb ->> '\2')", text)
    if upper.startswith(("CREATE TABLE", "ALTER TABLE")):
        for pattern, replacement in _DDL_TYPES:
            text = pattern.sub(replacement, text)
    if upper.startswith("INSERT OR IGNORE INTO"):
        text = "INSERT INTO" + text[len("INSERT OR IGNORE INTO"):] + " ON CONFLICT DO NOTHING"
    return (text.replace("%", "%%").replace("?", "%s"),)


def upsert(table: str, columns: list[str], key: list[str], values: str) -> str:
    """INSERT OR REPLACE as PostgreSQL: replace the row with the same primary key."""
    rest = [c for c in columns if c not in key]
    action = ("DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in rest)) if rest \
        else "DO NOTHING"
    return (f"INSERT INTO {table} ({', '.join(columns)}) {values} "
            f"ON CONFLICT ({', '.join(key)}) {action}")


def _split(script: str) -> list[str]:
    return [s for s in (part.strip() for part in script.split(";")) if s]


class Connection:
    """One psycopg connection in autocommit mode; explicit BEGIN/COMMIT as with sqlite3's
    isolation_level=None. Reconnects when the server dropped it between transactions."""

    def __init__(self, dsn: dsn_mod.Dsn, *, store: str, connect_timeout: float = 10) -> None:
        self.dsn, self.store = dsn, store
        self._timeout = connect_timeout
        self._lock = threading.RLock()
        self._upserts: dict[str, tuple[str, ...]] = {}
        self._conn = self._connect()

    def _connect(self) -> psycopg.Connection:
        with _mapped(self.dsn):
            return psycopg.connect(self.dsn.secret(), autocommit=True,
                                   connect_timeout=max(1, int(self._timeout)))

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def _live(self) -> psycopg.Connection:
        if self._conn.broken or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def _statements(self, sql: str) -> tuple[str, ...]:
        match = _REPLACE.fullmatch(sql)
        if match is None:
            return translate(sql, self.store)
        if sql not in self._upserts:
            table = match[1]
            columns = [c.strip() for c in match[2].split(",")] if match[2] else \
                [row[1] for row in self._conn.execute(*translate(
                    f"PRAGMA table_info({table})"), ()).fetchall()]
            key = [row[0] for row in self._conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
                "i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass "
                "AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
                (table,)).fetchall()]
            self._upserts[sql] = translate(upsert(table, columns, key, match[3]), self.store)
        return self._upserts[sql]

    def execute(self, sql: str, params: Sequence = ()) -> psycopg.Cursor:
        with self._lock, _mapped(self.dsn):
            conn = self._live()
            cursor = conn.cursor()
            for statement in self._statements(sql):
                cursor.execute(statement, tuple(params))
            return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence]) -> psycopg.Cursor:
        with self._lock, _mapped(self.dsn):
            self._live()
            (statement,) = self._statements(sql)
            cursor = self._conn.cursor()
            cursor.executemany(statement, [tuple(r) for r in rows])
            return cursor

    @contextlib.contextmanager
    def pipeline(self):
        """Statements executed inside are sent without waiting for each answer: a read's
        fetch sends what is queued and waits once, and the end sends the rest and waits
        once (a transaction of N statements costs two round trips, not N). Errors surface
        at that fetch or at the end, as the sqlite3 classes; after one, the statements
        queued behind it are skipped, so the caller's open transaction is left failed for
        its ROLLBACK (held: the lock, so no other thread's statement joins the pipeline)."""
        with self._lock, _mapped(self.dsn), self._live().pipeline():
            yield self

    def _pipelined(self) -> bool:
        return self._conn.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF

    def begin_keyed(self, key: str) -> None:
        """BEGIN for a writer that touches only the rows of `key` (one agent's): the store's
        lock shared, so store-wide writers (BEGIN IMMEDIATE) still exclude it, and the
        key's own lock exclusive, so writers of other keys on any replica run beside it
        (READ COMMITTED: each statement after the locks sees what the last holder wrote)."""
        with self._lock, _mapped(self.dsn):
            if self._pipelined():  # a pipeline takes one statement per message
                cursor = self._conn.cursor()
                cursor.execute("BEGIN")
                cursor.execute("SELECT pg_advisory_xact_lock_shared(%s), "
                               "pg_advisory_xact_lock(hashtextextended(%s, 0))",
                               (lock_key(self.store), f"coral:{self.store}:{key}"))
                return
            # BEGIN and both locks in one round trip: without parameters psycopg sends the
            # text as one simple query, which may hold several statements (values quoted)
            self._live().cursor().execute(psycopg.sql.SQL(
                "BEGIN; SELECT pg_advisory_xact_lock_shared({}), "
                "pg_advisory_xact_lock(hashtextextended({}, 0))").format(
                    lock_key(self.store), f"coral:{self.store}:{key}"))

    def begin_keyed_all(self, keys: Sequence[str]) -> None:
        """begin_keyed for a writer of several keys' rows (a group of registrations): the
        store's lock shared, then each key's lock in sorted order, as every such writer
        takes them, so two writers never wait for each other in a cycle."""
        names = [f"coral:{self.store}:{key}" for key in sorted(set(keys))]
        with self._lock, _mapped(self.dsn):
            cursor = self._live().cursor()
            for statement, params in (
                    ("BEGIN", None),
                    ("SELECT pg_advisory_xact_lock_shared(%s)", (lock_key(self.store),)),
                    ("SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
                     "FROM unnest(%s::text[]) AS k", (names,))):
                cursor.execute(statement, params)

    def executescript(self, script: str) -> None:
        """Schema scripts: one transaction under the schema lock, so replicas starting
        together do not race on CREATE ... IF NOT EXISTS."""
        with self._lock, _mapped(self.dsn):
            with self._live().transaction():
                cursor = self._conn.cursor()
                cursor.execute(f"SELECT pg_advisory_xact_lock({lock_key('schema')})")
                for sql in _split(script):
                    for statement in translate(sql, self.store):
                        cursor.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _mapped:
    """psycopg errors as the sqlite3 classes the stores catch, password-free."""

    def __init__(self, dsn: dsn_mod.Dsn) -> None:
        self.dsn = dsn

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or not isinstance(exc, psycopg.Error):
            return False
        message = str(exc).replace(self.dsn.secret(), str(self.dsn))
        password = _password(self.dsn.secret())
        if password:
            message = message.replace(password, "***")
        if isinstance(exc, psycopg.errors.IntegrityError):
            raise IntegrityError(message) from None
        if isinstance(exc, psycopg.OperationalError | psycopg.errors.UndefinedTable):
            raise OperationalError(message) from None
        raise DatabaseError(message) from None


def _password(dsn: str) -> str:
    try:
        return psycopg.conninfo.conninfo_to_dict(dsn).get("password") or ""
    except psycopg.Error:
        return ""


def connect(dsn: dsn_mod.Dsn, *, store: str) -> Connection:
    return Connection(dsn, store=store)
