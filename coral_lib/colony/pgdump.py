"""pg_dump / pg_restore of a PostgreSQL colony's tables, for `coral colony backup/restore`.

The colony's tables live in one schema (the DSN's current schema, `public` unless the DSN
sets search_path). `dump()` opens a REPEATABLE READ transaction, exports its snapshot, reads
the audit head in it and runs `pg_dump --snapshot` on that same snapshot: the dump and the
manifest's record count describe one committed state, so a record written meanwhile is in
the dump or after it, never half. `restore()` runs pg_restore as one transaction (a failure
leaves nothing behind); `drop()` removes what a refused restore put in.

The password never reaches argv or an error: the tools get the DSN without it on
`--dbname` and the password in PGPASSWORD (their environment is readable only by the same
user, /proc/<pid>/cmdline by everyone); their stderr is redacted before it is shown.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pathlib
import shutil
import sqlite3
import subprocess

import psycopg.conninfo

from coral_lib import errors
from coral_lib.colony import dsn as dsn_mod
from coral_lib.colony import storage


class PgToolError(errors.CoralError):
    """pg_dump / pg_restore failed or is missing; the message is password-free."""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    schema: str  # where the colony's tables are
    audit_records: int  # the newest audit record in the dump
    # the last checkpoint the dump records, per replica ('' = audit_checkpoint's one row)
    checkpoint_seqs: dict[str, int]


def tool(name: str) -> str:
    """pg_dump / pg_restore from PATH (Debian's wrapper picks the newest installed), else
    the newest /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name) or next(iter(sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
        reverse=True)), None)
    if not found:
        raise PgToolError(f"{name} not found: install the PostgreSQL client tools "
                          f"(Debian: postgresql-client)")
    return found


def connection_args(dsn: dsn_mod.Dsn) -> tuple[str, dict[str, str]]:
    """(--dbname value without the password, environment carrying it). Pure."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn.secret())
    except psycopg.Error:
        raise PgToolError(f"cannot parse the database DSN {dsn}") from None
    password = params.pop("password", None)
    env = {"PGPASSWORD": str(password)} if password else {}
    return psycopg.conninfo.make_conninfo(**params), env


def _run(dsn: dsn_mod.Dsn, argv: list[str], what: str) -> None:
    dbname, env = connection_args(dsn)
    try:
        run = subprocess.run([*argv, f"--dbname={dbname}"], capture_output=True, text=True,
                             env={**os.environ, **env}, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PgToolError(f"{what} ({dsn}): {exc}") from None
    if run.returncode != 0:
        message = run.stderr.strip()
        if env:
            message = message.replace(env["PGPASSWORD"], "***")
        raise PgToolError(f"{what} ({dsn}): {argv[0].rsplit('/', 1)[-1]} exited "
                          f"{run.returncode}: {message[-2000:]}")


def _query(dsn: dsn_mod.Dsn, sql: str, params: tuple = ()) -> list[tuple]:
    conn = storage.connect(dsn, store="backup")
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def dump(dsn: dsn_mod.Dsn, dest: pathlib.Path) -> Snapshot:
    """The colony's tables at `dsn` to `dest` (pg_dump custom format), as of one snapshot."""
    conn = storage.connect(dsn, store="backup")
    try:
        conn.execute("BEGIN")  # REPEATABLE READ: one snapshot (pgsql.translate)
        snapshot, schema = conn.execute(
            "SELECT pg_export_snapshot(), current_schema()").fetchone()
        (newest,) = conn.execute("SELECT max(seq) FROM audit").fetchone()
        (checkpoint,) = conn.execute(
            "SELECT max(seq) FROM audit_checkpoint WHERE id = 1").fetchone()
        seqs = {"": int(checkpoint or 0), **dict(conn.execute(
            "SELECT replica, seq FROM audit_replica_checkpoint").fetchall())}
        _run(dsn, [tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                   f"--snapshot={snapshot}", f"--table={_quoted(schema)}.*",
                   f"--file={dest}"], "cannot dump the colony's database")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:  # pgsql maps psycopg errors, password-free
        raise PgToolError(storage.explain("cannot dump the colony's database", dsn, exc)) \
            from None
    finally:
        conn.close()
    return Snapshot(schema=schema, audit_records=int(newest or 0),
                    checkpoint_seqs=seqs)


def tables(dsn: dsn_mod.Dsn) -> tuple[str, list[str]]:
    """(the DSN's current schema, the tables in it)."""
    try:
        conn = storage.connect(dsn, store="backup")
        try:
            (schema,) = conn.execute("SELECT current_schema()").fetchone()
            names = [r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
                "ORDER BY table_name", (schema,)).fetchall()]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise PgToolError(storage.explain("cannot read the target database", dsn, exc)) \
            from None
    if schema is None:
        raise PgToolError(f"the target database ({dsn}) has no current schema: the schema its "
                          f"search_path names does not exist")
    return schema, names


def restore(dsn: dsn_mod.Dsn, dump_file: pathlib.Path) -> None:
    """pg_restore `dump_file` into `dsn` as one transaction (all or nothing)."""
    _run(dsn, [tool("pg_restore"), "--single-transaction", "--exit-on-error", "--no-owner",
               "--no-privileges", str(dump_file)], "cannot restore into the target database")


def drop(dsn: dsn_mod.Dsn, schema: str, names: list[str]) -> None:
    """Remove the tables a refused restore created (the target held none before)."""
    if names:
        conn = storage.connect(dsn, store="backup")
        try:
            conn.execute("DROP TABLE IF EXISTS " + ", ".join(
                f"{_quoted(schema)}.{_quoted(n)}" for n in names) + " CASCADE")
        finally:
            conn.close()


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
