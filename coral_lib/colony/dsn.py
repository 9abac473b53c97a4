"""Where the colony keeps its tables: SQLite files (the default) or one PostgreSQL database.

A PostgreSQL DSN travels as a `Dsn`: a `str` whose value is the DSN with its password
replaced by `***`, so a DSN that reaches a log line, an error or `repr()` never carries the
password; the real DSN is only read by the PostgreSQL backend (`coral_lib.colony.pgsql`).
Operators give it as the DSN itself, `env:NAME` (an environment variable) or `file:PATH`
(a file holding it, e.g. a mounted Kubernetes Secret). Pure: no I/O but reading that file.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping

SCHEMES = ("postgresql://", "postgres://")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


class DsnError(ValueError):
    """A database setting that names no usable DSN; the message names the input."""


class Dsn(str):
    """A PostgreSQL DSN whose string value is redacted; `.secret()` is the real one."""

    _secret: str

    def __new__(cls, dsn: str) -> Dsn:
        obj = super().__new__(cls, redact(dsn))
        obj._secret = dsn
        return obj

    def secret(self) -> str:
        return self._secret

    def __repr__(self) -> str:
        return f"Dsn({str.__repr__(self)})"

    def __reduce__(self):  # never pickle the password into another process by accident
        raise TypeError("a Dsn is not picklable")


def redact(dsn: str) -> str:
    """`dsn` with any password (URL userinfo, ?password=, key=value form) as `***`."""
    if dsn.startswith(SCHEMES):
        parts = urllib.parse.urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            netloc = f"{userinfo}@{host}"
        query = urllib.parse.urlencode(
            [(k, "***" if k.lower() == "password" else v)
             for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)],
            safe="*=")
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return _KV_PASSWORD.sub(r"\1***", dsn)


def is_postgresql(value: str) -> bool:
    return value.startswith(SCHEMES)


def resolve(value: str, *, environ: Mapping[str, str] | None = None) -> Dsn | None:
    """The colony's `--database` / `database:` setting as a Dsn; None for '' or 'sqlite'
    (the data directory's SQLite files). Accepts a postgresql:// DSN, env:NAME, file:PATH."""
    environ = os.environ if environ is None else environ
    value = value.strip()
    if value in ("", "sqlite"):
        return None
    where = "the database setting"
    if value.startswith("env:"):
        name = value[4:]
        if name not in environ:
            raise DsnError(f"database env:{name}: environment variable {name} is not set")
        value, where = environ[name].strip(), f"environment variable {name}"
    elif value.startswith("file:"):
        path = value[5:]
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read().strip()
        except OSError as exc:
            raise DsnError(f"database file:{path}: cannot read it ({exc.strerror})") from None
        where = f"file {path}"
    if not is_postgresql(value):
        # the value itself is not echoed: it may hold a password in a form redact() misses
        raise DsnError(f"{where}: expected a postgresql:// DSN, env:NAME or file:PATH "
                       "(or 'sqlite')")
    return Dsn(value)
