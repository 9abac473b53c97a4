"""A real PostgreSQL 15 server for tests: Debian's initdb/pg_ctl, its own data directory,
a loopback port and password (scram) authentication, run as the `postgres` user (the
server refuses to run as root). Each test gets its own schema via `fresh_dsn()`."""

from __future__ import annotations

import os
import pathlib
import pwd
import secrets
import shutil
import subprocess
import tempfile
import urllib.parse

from coral_lib.colony import dsn as dsn_mod
from tests.support import coral_procs

BIN = pathlib.Path(os.environ.get("CORAL_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "postgres"  # created by Debian's postgresql-common


def available() -> str:
    """'' when a server can be started here, else why not."""
    if not (BIN / "initdb").exists():
        return f"{BIN}/initdb missing: install Debian's postgresql (tools/setup.sh does)"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no {USER} user to run the server as"
    return ""


class Server:
    def __init__(self, *, settings: str = "") -> None:
        """settings: more `-c name=value` options (a bench sizes shared_buffers)."""
        self.settings = settings
        self.port = coral_procs.free_port()
        self.password = "pw-" + secrets.token_hex(12)
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="coral-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", USER, "--", *argv], check=True, capture_output=True,
                       timeout=120, cwd="/")

    def start(self) -> Server:
        entry = pwd.getpwnam(USER)
        os.chown(self.root, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o700)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        self._as_postgres(str(BIN / "initdb"), "-D", str(self.data), "-U", "coral",
                          "--pwfile", str(pwfile), "--auth-local=scram-sha-256",
                          "--auth-host=scram-sha-256", "--locale=C.UTF-8", "-E", "UTF8")
        pwfile.unlink()
        options = (f"-c port={self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.root} -c max_connections=400 "
                   f"-c fsync=off -c shared_buffers=32MB {self.settings}")
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                          "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        try:
            self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                              "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, *, schema: str = "", database: str = "postgres") -> str:
        query = f"?options={urllib.parse.quote(f'-csearch_path={schema}')}" if schema else ""
        return (f"postgresql://coral:{self.password}@127.0.0.1:{self.port}/{database}{query}")

    def fresh_dsn(self) -> dsn_mod.Dsn:
        """A Dsn whose tables land in a new, empty schema (one per test)."""
        import psycopg

        schema = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return dsn_mod.Dsn(self.url(schema=schema))

    def fresh_database(self) -> dsn_mod.Dsn:
        """A Dsn to a new, empty database (tables in its `public` schema), as a colony of
        its own has: backup/restore move whole databases."""
        import psycopg

        name = "d_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return dsn_mod.Dsn(self.url(database=name))
