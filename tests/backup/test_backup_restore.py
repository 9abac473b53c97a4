"""Issue 13, "Backup and restore": `coral colony backup --to FILE` takes a consistent copy
while the colony serves (SQLite's online backup API); `coral colony restore` checks the
audit chain and checkpoints before it installs anything. Tested under load: records written
during the backup are either in it or after it, never half.

A real colony process with a real agent serves exec operations from several threads while
`coral colony backup` runs as its own process, several times over.
"""

from __future__ import annotations

import gzip
import io
import json
import pathlib
import sqlite3
import stat
import tarfile
import threading

import pytest

from coral_lib import client
from coral_lib.colony import audit, audit_check
from tests.support import coral_procs

AGENT = "backed-up-1"
BACKUPS = 3


def _records(db_path: pathlib.Path) -> list[tuple]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT seq, ts, kind, fields, prev_hash, hash FROM audit "
                          "ORDER BY seq").fetchall()
    finally:
        db.close()


def _members(path: pathlib.Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(colony, backups taken under load, tmp): the colony stopped after the load."""
    tmp = tmp_path_factory.mktemp("backup")
    config = tmp / "colony.yaml"
    config.write_text(f"checkpointDir: {tmp / 'checkpoints'}\ncheckpointSyslog: ''\n"
                      f"checkpointEvery: 5\n")
    colony = coral_procs.Colony(tmp / "colony", args=("--config", str(config))).start()
    agent = coral_procs.Agent(tmp / "agents", colony, agent_id=AGENT).start()
    stop, failures, done = threading.Event(), [], []

    def load() -> None:
        with colony.client() as c:
            while not stop.is_set():
                try:
                    out = c.exec(client.Targeting(agent=AGENT), argv=["echo", "under-load"])
                    done.append(out.operation_id)
                except client.CoralError as exc:  # pragma: no cover - reported below
                    failures.append(str(exc))
    backups = []
    try:
        coral_procs.wait_registered(colony, [AGENT])
        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        coral_procs.wait_for(lambda: len(done) >= 10, timeout=60, what="operations under way")
        for i in range(BACKUPS):
            target = tmp / f"backup-{i}.tar.gz"
            run = coral_procs.coral("colony", "backup", "--to", str(target), "--data-dir",
                                    str(colony.data_dir), "--config", str(config))
            assert run.returncode == 0, run.stderr
            backups.append((target, len(done)))
        stop.set()
        for t in threads:
            t.join(60)
    finally:
        stop.set()
        agent.stop()
        colony.stop()
    assert not failures, failures[:3]
    assert len(done) > backups[0][1], "operations continued after the first backup"
    return colony, config, [b for b, _ in backups], tmp


def test_backup_under_load_has_whole_records_only(served, tmp_path) -> None:
    """Each backup's audit log is a prefix of the live one: every record whole and equal to
    the live record of that id, the chain verifies with the key, and what the backup lacks
    is exactly the records written after it."""
    colony, _, backups, _ = served
    live = _records(colony.data_dir / "audit.db")
    key = audit.load_key(colony.data_dir / "audit.key", create=False)
    previous = 0
    for path in backups:
        members = _members(path)
        copy = tmp_path / f"{path.name}.audit.db"
        copy.write_bytes(members["data/audit.db"])
        records = _records(copy)
        assert records, "the backup holds the records written before it"
        assert records == live[:len(records)], "a record differs from the live log"
        assert len(records) >= previous  # later backups hold more
        previous = len(records)
        for row in records:
            json.loads(row[3])  # whole JSON fields
        result = audit.verify_file(copy, key)
        assert result.ok and result.checked == len(records), result.reason
        manifest = json.loads(members["manifest.json"])
        assert manifest["audit_records"] == records[-1][0]
        started = {json.loads(r[3]).get("op_id") for r in records if r[2] == "started"}
        assert started, "exec operations were audited before the backup"
    assert len(live) > previous, "records written after the last backup are after it"


def test_backup_file_is_private_and_complete(served) -> None:
    colony, _, backups, _ = served
    path = backups[-1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    names = set(_members(path))
    for name in ("data/colony.db", "data/audit.db", "data/identity.db", "data/approvals.db",
                 "data/ca.crt", "data/ca.key", "data/server.key", "data/colony.id",
                 "data/tokens.json", "keys/audit.key", "keys/checkpoint.key",
                 "keys/checkpoint.pub", "checkpoints/checkpoints.jsonl", "manifest.json"):
        assert name in names, name
    assert not [n for n in names if n.endswith(("-wal", "-shm", "-journal"))]


def test_restore_verifies_then_installs_and_the_colony_starts(served, tmp_path) -> None:
    colony, _, backups, tmp = served
    target = tmp_path / "restored"
    run = coral_procs.coral("colony", "restore", "--from", str(backups[-1]),
                            "--data-dir", str(target), "--checkpoints", str(tmp / "checkpoints"))
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["verified_against"]["backup"]["ok"]
    assert report["verified_against"]["live"]["ok"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    for name in ("ca.key", "audit.key", "checkpoint.key", "audit.db", "tokens.json"):
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o600, name
    # the restored colony serves with the same identity and CA, and its log verifies
    restored = coral_procs.Colony(target).start()
    try:
        assert restored.colony_id == colony.colony_id
        with restored.client() as c:
            assert c.verify_audit()["ok"]
    finally:
        restored.stop()
    assert audit_check.newest_record(target / "audit.db") >= report["audit_records"]


def _tampered(backup: pathlib.Path, dest: pathlib.Path, change) -> pathlib.Path:
    """A copy of `backup` whose audit.db went through `change(db)`, with the manifest's
    sha256 and record count fixed up as an attacker would (they can read the format)."""
    import hashlib

    members = _members(backup)
    db_path = dest.with_suffix(".db")
    db_path.write_bytes(members["data/audit.db"])
    db = sqlite3.connect(db_path, isolation_level=None)
    change(db)
    db.close()
    members["data/audit.db"] = db_path.read_bytes()
    manifest = json.loads(members["manifest.json"])
    manifest["files"]["data/audit.db"] = hashlib.sha256(members["data/audit.db"]).hexdigest()
    manifest["audit_records"] = audit_check.newest_record(db_path)
    members["manifest.json"] = json.dumps(manifest).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dest.write_bytes(gzip.compress(buffer.getvalue()))
    return dest


def _edit_first_exec(db: sqlite3.Connection) -> None:
    db.execute("UPDATE audit SET fields = json_set(fields, '$.argv', json('[\"true\"]')) "
               "WHERE seq = (SELECT min(seq) FROM audit WHERE kind = 'started')")


def _truncate_checkpointed(db: sqlite3.Connection) -> None:
    # drop every record and move the head: a chain that verifies on its own (wipe)
    db.execute("DELETE FROM audit")
    db.execute("UPDATE audit_head SET seq = 0, hash = ?", ("0" * 64,))


@pytest.mark.parametrize("change", [_edit_first_exec, _truncate_checkpointed],
                         ids=["edited-record", "wiped-log"])
def test_restore_refuses_tampered_audit(served, tmp_path, change) -> None:
    """The attacker edits the backup's audit.db and fixes the manifest's checksum; restore
    verifies the chain and checkpoints first, refuses with a clear error, installs nothing."""
    _, _, backups, tmp = served
    bad = _tampered(backups[-1], tmp_path / "bad.tar.gz", change)
    target = tmp_path / "restored"
    run = coral_procs.coral("colony", "restore", "--from", str(bad), "--data-dir", str(target),
                            "--checkpoints", str(tmp / "checkpoints"))
    assert run.returncode == 1
    assert "refusing to restore" in run.stderr and "does not verify" in run.stderr
    assert ("modified" in run.stderr) or ("no checkpoint covers" in run.stderr), run.stderr
    assert not target.exists()
    assert not list(tmp_path.glob(".restored.restore-*")), "staging left behind"


def test_restore_refuses_a_corrupted_or_foreign_file(served, tmp_path) -> None:
    _, _, backups, _ = served
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(backups[-1].read_bytes()[:4000])
    run = coral_procs.coral("colony", "restore", "--from", str(cut), "--data-dir",
                            str(tmp_path / "a"))
    assert run.returncode == 1 and "nothing restored" in run.stderr
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        manifest = json.dumps({"format": "coral-colony-backup", "version": 1,
                               "backend": "sqlite", "files": {}}).encode()
        for name, data in (("manifest.json", manifest), ("../escape", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    run = coral_procs.coral("colony", "restore", "--from", str(evil), "--data-dir",
                            str(tmp_path / "b"))
    assert run.returncode == 1 and "unexpected member '../escape'" in run.stderr
    assert not (tmp_path / "escape").exists() and not (tmp_path / "b").exists()


def test_restore_refuses_a_non_empty_data_dir(served, tmp_path) -> None:
    colony, _, backups, _ = served
    run = coral_procs.coral("colony", "restore", "--from", str(backups[-1]), "--data-dir",
                            str(colony.data_dir))
    assert run.returncode == 1 and "is not empty" in run.stderr


def test_keys_outside_the_data_dir_are_backed_up_and_restored_where_the_config_says(
        tmp_path) -> None:
    """auditKeyFile / checkpointKeyFile off the data disk: the backup carries them, restore
    writes them where the target's settings say (0600) and that colony starts."""
    def config(name: str) -> pathlib.Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"auditKeyFile: {tmp_path / name / 'keys' / 'audit.key'}\n"
                        f"checkpointKeyFile: {tmp_path / name / 'keys' / 'checkpoint.key'}\n"
                        f"checkpointDir: {tmp_path / name / 'checkpoints'}\n"
                        f"checkpointSyslog: ''\n")
        (tmp_path / name / "keys").mkdir(parents=True)
        return path
    source = config("source")
    colony = coral_procs.Colony(tmp_path / "source" / "data", args=("--config", str(source)))
    colony.start()
    try:  # one audited act, so the clean stop signs a checkpoint
        made = coral_procs.coral("colony", "join-token", "create", "--agent-id", "later-1",
                                 env=colony.operator_env)
        assert made.returncode == 0, made.stderr
    finally:
        colony.stop()
    assert (tmp_path / "source" / "keys" / "audit.key").exists()
    assert not (tmp_path / "source" / "data" / "audit.key").exists()
    archive = tmp_path / "b.tar.gz"
    run = coral_procs.coral("colony", "backup", "--to", str(archive), "--data-dir",
                            str(colony.data_dir), "--config", str(source))
    assert run.returncode == 0, run.stderr
    target = config("target")
    run = coral_procs.coral("colony", "restore", "--from", str(archive), "--data-dir",
                            str(tmp_path / "target" / "data"), "--config", str(target))
    assert run.returncode == 0, run.stderr
    key = tmp_path / "target" / "keys" / "audit.key"
    assert key.read_bytes() == (tmp_path / "source" / "keys" / "audit.key").read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    restored = coral_procs.Colony(tmp_path / "target" / "data", args=("--config", str(target)))
    try:
        restored.start()
        with restored.client() as c:
            assert c.verify_audit()["ok"]
    finally:
        restored.stop()
