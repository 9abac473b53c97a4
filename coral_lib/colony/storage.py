"""Why a write to one of the colony's SQLite files failed, in words an operator can act on."""

from __future__ import annotations

import errno
import os
import sqlite3

from coral_lib.colony import dsn


def read_only(directory: str) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def explain(what: str, path: str, exc: sqlite3.Error | OSError) -> str:
    """'<what> (<path>): <cause>: <message>' naming a full disk or read-only dir."""
    if getattr(exc, "postgresql", False):  # path is then the redacted DSN
        return f"{what} ({path}): PostgreSQL error: {exc}"
    directory = os.path.dirname(os.path.abspath(path))
    text = str(exc)
    if "full" in text or "No space" in text:
        cause = f"the disk holding {directory} is full"
    elif read_only(directory) or "readonly" in text or "read-only" in text or (
            "Read-only" in text):
        cause = f"the data directory {directory} is read-only"
    elif not os.path.isdir(directory):
        cause = f"the data directory {directory} does not exist"
    else:
        cause = "SQLite error" if isinstance(exc, sqlite3.Error) else "OS error"
    return f"{what} ({path}): {cause}: {text}"


def connect(path: str | os.PathLike, *, store: str, timeout: float = 30):
    """The store's connection: SQLite at `path` (autocommit; explicit BEGIN), or PostgreSQL
    when `path` is a dsn.Dsn (coral_lib.colony.pgsql, the same sqlite3-shaped calls)."""
    if isinstance(path, dsn.Dsn):
        from coral_lib.colony import pgsql  # psycopg is only needed with PostgreSQL
        return pgsql.connect(path, store=store)
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)


def is_file(path: str | os.PathLike) -> bool:
    """True for a SQLite file path, False for a PostgreSQL DSN."""
    return not isinstance(path, dsn.Dsn)


SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def private_db(path: str | os.PathLike) -> None:
    """Make a SQLite file and its side files owner-only (0600) before SQLite opens them.

    SQLite creates -wal/-shm/-journal with the database file's mode, so creating the
    database 0600 first covers them; chmod fixes files left 0644 by older versions. A
    read-only file system is left alone: opening the database reports it.
    """
    path = os.fspath(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.ENOENT):
            raise
    for suffix in SQLITE_SIDE_FILES:
        try:
            if os.stat(path + suffix).st_mode & 0o077:
                os.chmod(path + suffix, 0o600)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise
