"""Issue 10, "Secrets and hygiene" (files): DB files were 0644, a pre-existing data dir kept
its mode, and operator tokens were stored in plain text. Run against real colony processes:
the data directory is 0700 and every SQLite file (with its -wal/-shm) 0600 while the colony
runs, whatever was there before; tokens.json holds only SHA-256 digests, and an old
plaintext tokens.json is rewritten with hashes on load while its tokens keep working."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import stat

import pytest

from coral_lib.colony import auth
from tests.security import conftest
from tests.support import coral_procs

DATABASES = ("colony.db", "audit.db", "approvals.db", "identity.db")
PRIVATE = ("audit.key", "checkpoint.key", "tokens.json", "ca.key", "server.key", "admin.token")


def _mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes_while_running(colony: conftest.PolicyColony) -> dict[str, int]:
    """Modes of the data dir, every database and its side files, with the colony running and
    having written to every store (exec -> registry, audit, approvals opened)."""
    agent = coral_procs.Agent(colony.data_dir.parent / "agents", colony,
                              agent_id="files-1").start()
    try:
        coral_procs.wait_registered(colony, ["files-1"])
        run = coral_procs.coral("exec", "--agent", "files-1", "--", "true",
                                env=colony.operator_env)
        assert run.returncode == 0, run.stderr
        found = {".": _mode(colony.data_dir)}
        for name in DATABASES:
            for suffix in ("", "-wal", "-shm"):
                path = colony.data_dir / f"{name}{suffix}"
                if path.exists():
                    found[path.name] = _mode(path)
        for name in PRIVATE:
            found[name] = _mode(colony.data_dir / name)
        return found
    finally:
        agent.stop()


def test_review_db_files_are_0600_and_data_dir_0700(tmp_path):
    colony = conftest.PolicyColony(tmp_path / "colony").start()
    try:
        modes = _modes_while_running(colony)
    finally:
        colony.stop()
    assert "audit.db-wal" in modes and "colony.db-shm" in modes  # the side files were seen
    assert {name: oct(m) for name, m in modes.items() if m != (0o700 if name == "." else 0o600)
            } == {}


def test_review_preexisting_world_readable_data_dir_and_dbs_are_made_private(tmp_path):
    data_dir = tmp_path / "colony"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)  # someone (an older version, an installer) made it 0755
    first = conftest.PolicyColony(data_dir).start()
    first.stop()
    for name in DATABASES:  # as the old code left them
        (data_dir / name).chmod(0o644)
    data_dir.chmod(0o755)
    colony = conftest.PolicyColony(data_dir).start()
    try:
        modes = _modes_while_running(colony)
    finally:
        colony.stop()
    assert {name: oct(m) for name, m in modes.items() if m != (0o700 if name == "." else 0o600)
            } == {}


def test_data_dir_owned_by_someone_else_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to hand the directory to another uid")
    data_dir = tmp_path / "colony"
    data_dir.mkdir(mode=0o755)
    os.chown(data_dir, 54321, 54321)
    run = coral_procs.coral("colony", "start", "--data-dir", str(data_dir), "--listen",
                            f"127.0.0.1:{coral_procs.free_port()}", timeout=30)
    assert run.returncode == 1
    assert f"data directory {data_dir} is owned by uid 54321" in run.stderr
    assert list(data_dir.iterdir()) == []


def test_review_tokens_are_stored_as_hashes(tmp_path):
    colony = conftest.PolicyColony(tmp_path / "colony")
    alice = colony.add_token("alice", "sre")
    colony.start()
    try:
        with colony.client_for("alice") as client:
            assert client.whoami() == "alice"
        with colony.client() as client:
            assert client.whoami() == "admin"
    finally:
        colony.stop()
    admin = (colony.data_dir / "admin.token").read_text().strip()
    text = (colony.data_dir / "tokens.json").read_text()
    assert alice not in text and admin not in text
    entries = json.loads(text)["tokens"]
    assert {e["identity"]: e["token_sha256"] for e in entries} == {
        "admin": hashlib.sha256(admin.encode()).hexdigest(),
        "alice": hashlib.sha256(alice.encode()).hexdigest()}
    assert _mode(colony.data_dir / "tokens.json") == 0o600


def test_old_plaintext_tokens_file_is_rewritten_hashed_on_load(tmp_path):
    colony = conftest.PolicyColony(tmp_path / "colony")
    coral_procs.coral("colony", "init", "--data-dir", str(colony.data_dir), check=True)
    admin = (colony.data_dir / "admin.token").read_text().strip()
    old = {"tokens": [{"token": admin, "identity": "admin", "groups": ["admins"]},
                      {"token": "bob-plain-token-0123456789", "identity": "bob",
                       "groups": ["sre"]}]}
    (colony.data_dir / "tokens.json").write_text(json.dumps(old))
    (colony.data_dir / "tokens.json").chmod(0o644)
    colony.tokens["bob"] = "bob-plain-token-0123456789"
    colony.start()
    try:
        with colony.client_for("bob") as client:
            assert client.whoami() == "bob"
        with colony.client() as client:
            assert client.whoami() == "admin"
    finally:
        colony.stop()
    text = (colony.data_dir / "tokens.json").read_text()
    assert "bob-plain-token" not in text and admin not in text and '"token"' not in text
    assert _mode(colony.data_dir / "tokens.json") == 0o600
    assert [e["identity"] for e in json.loads(text)["tokens"]] == ["admin", "bob"]
    assert "rewrote it with their SHA-256 only" in colony.log_path.read_text()


def test_token_book_refuses_unknown_tokens_and_names_a_bad_file(tmp_path):
    path = tmp_path / "tokens.json"
    auth.save_tokens(path, [{"token": "right-token", "identity": "alice", "groups": ["sre"]}])
    book = auth.TokenBook(path)
    assert book.lookup("right-token") == auth.Identity("alice", ("sre",))
    assert book.lookup("wrong-token") is None
    assert book.lookup(hashlib.sha256(b"right-token").hexdigest()) is None  # hash is no token
    path.write_text(json.dumps({"tokens": [{"token_sha256": "abc", "identity": "x"}]}))
    with pytest.raises(ValueError, match=f"tokens file {path}.*not 64 hex digits"):
        auth.TokenBook(path)
