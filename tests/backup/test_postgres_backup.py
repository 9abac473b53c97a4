"""Issue 13, "Backup and restore", PostgreSQL colonies: `coral colony backup --to FILE` takes
a consistent copy while the colony serves (`pg_dump` once the PostgreSQL backend exists);
`coral colony restore` checks the audit chain and checkpoints before it starts. Tested under
load: records written during the backup are either in it or after it, never half.

A real colony process on a real PostgreSQL server (tests/support/postgres.py, its own
database) with a real agent serves exec operations from several threads while `coral colony
backup --database file:DSN` runs as its own process, several times over. pg_dump and
pg_restore are the real tools, reached through a PATH wrapper that records their argv.
"""

from __future__ import annotations

import json
import os
import pathlib
import tarfile
import threading

import psycopg
import pytest

from coral_lib import client
from coral_lib.colony import audit, audit_check, pgdump
from tests.support import coral_procs

AGENT = "pg-backed-up-1"
BACKUPS = 2


def _rows(dsn) -> list[tuple]:
    with psycopg.connect(dsn.secret()) as conn:
        return conn.execute("SELECT seq, ts, kind, fields, prev_hash, hash FROM audit "
                            "ORDER BY seq").fetchall()


def _tables(dsn) -> list[str]:
    with psycopg.connect(dsn.secret()) as conn:
        return [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema()").fetchall()]


def _dsn_file(path: pathlib.Path, dsn) -> pathlib.Path:
    path.write_text(dsn.secret() + "\n")
    path.chmod(0o600)
    return path


def _config(path: pathlib.Path, checkpoint_dir: pathlib.Path) -> pathlib.Path:
    path.write_text(f"checkpointDir: {checkpoint_dir}\ncheckpointSyslog: ''\n"
                    f"checkpointEvery: 5\n")
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory, postgres_server):
    """Backups of a PostgreSQL colony taken under load, then (colony stopped) one taken
    after an attacker with database access edited an audit record."""
    tmp = tmp_path_factory.mktemp("pgbackup")
    source = postgres_server.fresh_database()
    dsn_file = _dsn_file(tmp / "source.dsn", source)
    config = _config(tmp / "colony.yaml", tmp / "checkpoints")
    wrappers = tmp / "bin"
    wrappers.mkdir()
    argv_log = tmp / "pg-tools.log"
    for name in ("pg_dump", "pg_restore"):
        script = wrappers / name
        script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"{name} $*\" >> {argv_log}\n"
                          f"[ -n \"$PGPASSWORD\" ] && echo '{name} PGPASSWORD set' >> {argv_log}\n"
                          f"exec {pgdump.tool(name)} \"$@\"\n")
        script.chmod(0o755)
    env = {"PATH": f"{wrappers}:{os.environ['PATH']}"}
    colony = coral_procs.Colony(tmp / "colony", args=(
        "--config", str(config), "--database", f"file:{dsn_file}")).start()
    agent = coral_procs.Agent(tmp / "agents", colony, agent_id=AGENT).start()
    stop, failures, done = threading.Event(), [], []

    def load() -> None:
        with colony.client() as c:
            while not stop.is_set():
                try:
                    done.append(c.exec(client.Targeting(agent=AGENT),
                                       argv=["echo", "under-load"]).operation_id)
                except client.CoralError as exc:  # pragma: no cover - reported below
                    failures.append(str(exc))

    def backup(target: pathlib.Path):
        return coral_procs.coral("colony", "backup", "--to", str(target), "--data-dir",
                                 str(colony.data_dir), "--config", str(config),
                                 "--database", f"file:{dsn_file}", env=env)
    backups, outputs = [], []
    try:
        coral_procs.wait_registered(colony, [AGENT])
        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        coral_procs.wait_for(lambda: len(done) >= 10, timeout=60, what="operations under way")
        for i in range(BACKUPS):
            run = backup(tmp / f"backup-{i}.tar.gz")
            assert run.returncode == 0, run.stderr
            outputs.append(run.stdout + run.stderr)
            backups.append((tmp / f"backup-{i}.tar.gz", len(done)))
        coral_procs.wait_for(lambda: len(done) > backups[-1][1] + 5, timeout=60,
                             what="operations after the last backup")
        stop.set()
        for t in threads:
            t.join(60)
    finally:
        stop.set()
        agent.stop()
        colony.stop()
    assert not failures, failures[:3]
    assert len(done) > backups[0][1], "operations continued after the first backup"
    live = _rows(source)
    # the attacker: database access, no audit key; edits an exec's argv in the live log
    with psycopg.connect(source.secret()) as conn:
        conn.execute("UPDATE audit SET fields = jsonb_set(fields::jsonb, '{argv}', "
                     "'[\"true\"]')::text WHERE seq = (SELECT min(seq) FROM audit "
                     "WHERE kind = 'started')")
    tampered = backup(tmp / "tampered.tar.gz")
    assert tampered.returncode == 0, tampered.stderr  # backup copies; restore judges
    outputs.append(tampered.stdout + tampered.stderr)
    return {"colony": colony, "source": source, "live": live, "tmp": tmp, "env": env,
            "backups": [b for b, _ in backups], "tampered": tmp / "tampered.tar.gz",
            "argv_log": argv_log, "outputs": outputs, "password": postgres_server.password}


def _restore(served, archive: pathlib.Path, target_dsn, data_dir: pathlib.Path,
             config: pathlib.Path | None = None):
    dsn_file = _dsn_file(data_dir.parent / f"{data_dir.name}.dsn", target_dsn)
    extra = ("--config", str(config)) if config else ()
    return coral_procs.coral("colony", "restore", "--from", str(archive), "--data-dir",
                             str(data_dir), "--database", f"file:{dsn_file}",
                             "--checkpoints", str(served["tmp"] / "checkpoints"), *extra,
                             env=served["env"])


def test_postgres_backup_under_load_has_whole_records_only(served, postgres_server,
                                                            tmp_path) -> None:
    """Each backup (pg_dump on one snapshot, taken while execs were audited) restores to an
    audit log that is a prefix of the live one: every record whole and equal to the live
    record of that id, the chain verifies, the manifest's head is the dump's, and what the
    backup lacks is exactly the records written after it."""
    key = audit.load_key(served["colony"].data_dir / "audit.key", create=False)
    previous = 0
    for index, path in enumerate(served["backups"]):
        with tarfile.open(path, "r:gz") as tar:
            manifest = json.loads(tar.extractfile("manifest.json").read())
            names = set(tar.getnames())
        assert manifest["backend"] == "postgresql" and manifest["schema"] == "public"
        assert "postgresql/colony.dump" in names and "keys/audit.key" in names
        assert not [n for n in names if n.endswith(".db")]
        target = postgres_server.fresh_database()
        run = _restore(served, path, target, tmp_path / f"restored-{index}")
        assert run.returncode == 0, run.stderr
        records = _rows(target)
        assert records, "the backup holds the records written before it"
        assert records == served["live"][:len(records)], "a record differs from the live log"
        assert manifest["audit_records"] == records[-1][0]
        assert len(records) >= previous
        previous = len(records)
        for row in records:
            json.loads(row[3])  # whole JSON fields
        result = audit.verify_file(target, key)
        assert result.ok and result.checked == len(records), result.reason
        assert any(r[2] == "started" for r in records), "exec operations were audited"
    assert len(served["live"]) > previous, "records written after the last backup are after it"


def test_postgres_restore_refuses_tampered_audit(served, postgres_server, tmp_path) -> None:
    """An attacker with database access (no audit key) edits an audit record before the
    backup: restore verifies the restored chain and checkpoints, refuses naming the first
    problem, drops what it restored (the target database is left empty) and installs none
    of the plain files."""
    target = postgres_server.fresh_database()
    data_dir = tmp_path / "restored"
    run = _restore(served, served["tampered"], target, data_dir)
    assert run.returncode == 1, run.stdout
    assert "refusing to restore" in run.stderr and "does not verify" in run.stderr
    assert "modified" in run.stderr or "HMAC" in run.stderr, run.stderr
    assert _tables(target) == [], "the refused restore left tables behind"
    assert not data_dir.exists()
    assert not list(tmp_path.glob(".restored.restore-*")), "staging left behind"


def test_postgres_restore_refuses_a_non_empty_target_database(served, postgres_server,
                                                              tmp_path) -> None:
    run = _restore(served, served["backups"][-1], served["source"], tmp_path / "restored")
    assert run.returncode == 1 and "is not empty" in run.stderr, run.stderr
    assert served["password"] not in run.stderr
    assert not (tmp_path / "restored").exists()


def test_postgres_backup_restores_only_with_a_postgresql_target(served, tmp_path) -> None:
    """Without --database the target is SQLite: the PostgreSQL backup is refused, named."""
    run = coral_procs.coral("colony", "restore", "--from", str(served["backups"][0]),
                            "--data-dir", str(tmp_path / "restored"))
    assert run.returncode == 1 and "matching --database" in run.stderr, run.stderr
    assert not (tmp_path / "restored").exists()


def test_postgres_restore_then_colony_starts_and_chain_verifies(served, postgres_server,
                                                                tmp_path) -> None:
    """Restore into an empty database and data directory, then a colony on them starts with
    the same identity and CA, serves, and its audit chain verifies (live, and offline with
    the checkpoints: `coral audit verify --checkpoints --database`, audit_check's code)."""
    target = postgres_server.fresh_database()
    data_dir = tmp_path / "restored"
    config = _config(tmp_path / "target.yaml", tmp_path / "checkpoints")
    run = _restore(served, served["backups"][-1], target, data_dir, config)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["verified_against"]["backup"]["ok"]
    assert report["verified_against"]["live"]["ok"]
    assert any((tmp_path / "checkpoints").iterdir()), "the checkpoint sink was seeded"
    dsn_file = data_dir.parent / f"{data_dir.name}.dsn"
    restored = coral_procs.Colony(data_dir, args=("--config", str(config), "--database",
                                                  f"file:{dsn_file}")).start()
    try:
        assert restored.colony_id == served["colony"].colony_id
        with restored.client() as c:
            assert c.verify_audit()["ok"]
            c.create_join_token("after-restore-1")  # serves and audits a new act
    finally:
        restored.stop()
    offline = coral_procs.coral("audit", "verify", "--checkpoints", str(tmp_path / "checkpoints"),
                                "--data-dir", str(data_dir), "--database", f"file:{dsn_file}")
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert json.loads(offline.stdout)["ok"]
    assert audit_check.newest_record(target) > report["audit_records"]


def test_postgres_backup_never_puts_the_password_on_argv(served, postgres_server,
                                                         tmp_path) -> None:
    """pg_dump and pg_restore ran (through the PATH wrapper that records their argv) with
    the password in PGPASSWORD only: not on argv (/proc/<pid>/cmdline is world-readable),
    not in the CLI's output, not in the backup file."""
    run = _restore(served, served["backups"][0], postgres_server.fresh_database(),
                   tmp_path / "restored")
    assert run.returncode == 0, run.stderr
    served["outputs"].append(run.stdout + run.stderr)
    log = served["argv_log"].read_text()
    assert log.count("pg_dump --format=custom") == BACKUPS + 1
    assert "pg_restore --single-transaction" in log
    assert "pg_dump PGPASSWORD set" in log and "pg_restore PGPASSWORD set" in log
    assert "--dbname=" in log and "127.0.0.1" in log  # the rest of the DSN is on argv
    assert served["password"] not in log
    for text in served["outputs"]:
        assert served["password"] not in text
    for path in served["backups"]:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                assert served["password"].encode() not in tar.extractfile(member).read()


def test_postgres_backup_error_names_the_cause_without_the_password(postgres_server,
                                                                    tmp_path) -> None:
    """A database that does not exist: the backup fails naming it, password-free."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "colony.id").write_text("c-1\n")
    missing = postgres_server.url(database="no_such_colony_db")
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(missing + "\n")
    run = coral_procs.coral("colony", "backup", "--data-dir", str(tmp_path / "data"),
                            "--database", f"file:{dsn_file}", "--to", str(tmp_path / "b.tar"))
    assert run.returncode == 1 and "no_such_colony_db" in run.stderr, run.stderr
    assert postgres_server.password not in run.stderr + run.stdout
    assert not (tmp_path / "b.tar").exists()
