"""Issue 10, "Audit integrity": an attacker who can write the colony's audit database and
read the code, but holds neither the audit HMAC key nor the checkpoint signing key.

A real colony process (with a real agent) writes records through real operations and signs
checkpoints into a directory outside its data directory and to a syslog socket this test
binds. After it stops, each test tampers with a copy of its files through plain sqlite3 and
runs `coral audit verify --checkpoints` as a subprocess: each kind of tampering fails and
the output names it. On the old code (unkeyed SHA-256 chain, head in the same database)
re-chaining, tail truncation with the head moved and a wipe all verified.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import socket
import sqlite3
import threading

import pytest

from coral_lib.colony import audit, checkpoints
from tests.security import conftest
from tests.support import coral_procs

EXECS = 6


class SyslogCollector:
    """A unix datagram socket standing in for /dev/log; keeps every message it receives."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path, self.messages = path, []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def colony_files(tmp_path_factory):
    """(data dir, checkpoint dir, public key copy, syslog lines) of a stopped colony."""
    tmp = tmp_path_factory.mktemp("trust-audit")
    sink, syslog = tmp / "checkpoints", SyslogCollector(tmp / "log.sock")
    config = tmp / "colony.yaml"
    config.write_text(f"checkpointDir: {sink}\ncheckpointSyslog: {syslog.path}\n"
                      f"checkpointEvery: 4\n")
    colony = conftest.PolicyColony(tmp / "colony", args=("--config", str(config))).start()
    agent = coral_procs.Agent(tmp / "agents", colony, agent_id="audited-1").start()
    try:
        coral_procs.wait_registered(colony, ["audited-1"])
        for i in range(EXECS):
            run = coral_procs.coral("exec", "--agent", "audited-1", "--", "echo", f"op-{i}",
                                    env=colony.operator_env)
            assert run.returncode == 0, run.stderr
    finally:
        agent.stop()
        colony.stop()
        syslog.close()
    assert colony.proc.returncode == 0
    public = tmp / "pinned-checkpoint.pub"  # the operator's copy, kept off the colony host
    shutil.copyfile(colony.data_dir / "checkpoint.pub", public)
    return colony.data_dir, sink, public, syslog.messages


@pytest.fixture
def attacker_copy(colony_files, tmp_path):
    """A copy of the colony's data directory to tamper with, and a verify runner."""
    data_dir, sink, public, _ = colony_files
    copy = tmp_path / "colony"
    shutil.copytree(data_dir, copy)

    def verify(checkpoint_path: pathlib.Path = sink) -> tuple[int, dict | str]:
        run = coral_procs.coral("audit", "verify", "--checkpoints", str(checkpoint_path),
                                "--public-key", str(public), "--data-dir", str(copy))
        try:
            return run.returncode, json.loads(run.stdout)
        except ValueError:
            return run.returncode, run.stdout + run.stderr

    return copy / "audit.db", verify


def _db(path: pathlib.Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def _started_seq(db: sqlite3.Connection) -> int:
    return db.execute("SELECT min(seq) FROM audit WHERE kind = 'started'").fetchone()[0]


def _failed_naming(result: tuple[int, dict | str], *words: str) -> str:
    code, report = result
    assert code == 1, report
    assert isinstance(report, dict) and report["ok"] is False, report
    text = " ".join(report["problems"])
    for word in words:
        assert word in text, (word, report)
    return text


def test_untampered_audit_log_verifies_against_checkpoints(colony_files, attacker_copy):
    _, sink, _, _ = colony_files
    db_path, verify = attacker_copy
    code, report = verify()
    assert code == 0, report
    with _db(db_path) as db:
        count = db.execute("SELECT count(*) FROM audit").fetchone()[0]
    assert report["checked"] == count >= 2 * EXECS
    # every 4 records (a registration's batch counts once) plus the clean-shutdown one
    assert report["checkpoints"] >= 1 + (2 * EXECS) // 4
    assert (sink / checkpoints.SINK_FILE).stat().st_mode & 0o777 == 0o600


def test_checkpoints_reach_syslog_and_verify_from_its_lines(colony_files, attacker_copy,
                                                            tmp_path):
    _, sink, _, messages = colony_files
    assert messages and all(checkpoints.TYPE in m for m in messages)
    shipped = tmp_path / "syslog.log"  # what a log shipper would have kept off the host
    shipped.write_text("unrelated line\n" + "\n".join(m.rstrip("\x00") for m in messages))
    db_path, verify = attacker_copy
    code, report = verify(shipped)
    assert code == 0, report
    assert report["checkpoints"] == len((sink / checkpoints.SINK_FILE).read_text().splitlines())
    with _db(db_path) as db:
        db.execute("DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)")
        db.execute("UPDATE audit_head SET seq = seq - 1, hash = "
                   "(SELECT hash FROM audit ORDER BY seq DESC LIMIT 1)")
    _failed_naming(verify(shipped), "truncated")


def test_review_audit_record_edit_is_detected(attacker_copy):
    db_path, verify = attacker_copy
    with _db(db_path) as db:
        seq = _started_seq(db)
        db.execute("UPDATE audit SET fields = json_set(fields, '$.command', 'true') "
                   "WHERE seq = ?", (seq,))
    code, report = verify()
    _failed_naming((code, report), f"record {seq}", "modified")
    assert report["first_bad_id"] == seq


def test_review_audit_record_delete_is_detected(attacker_copy):
    db_path, verify = attacker_copy
    with _db(db_path) as db:
        seq = _started_seq(db)
        db.execute("DELETE FROM audit WHERE seq = ?", (seq,))
    code, report = verify()
    _failed_naming((code, report), f"record {seq} is missing", "deleted")
    assert report["first_bad_id"] == seq


def test_review_audit_reorder_is_detected(attacker_copy):
    db_path, verify = attacker_copy
    with _db(db_path) as db:
        seq = _started_seq(db)
        cols = "ts, kind, fields, prev_hash, hash"
        a = db.execute(f"SELECT {cols} FROM audit WHERE seq = ?", (seq,)).fetchone()
        b = db.execute(f"SELECT {cols} FROM audit WHERE seq = ?", (seq + 1,)).fetchone()
        sql = "UPDATE audit SET ts=?, kind=?, fields=?, prev_hash=?, hash=? WHERE seq = ?"
        db.execute(sql, (*b, seq))
        db.execute(sql, (*a, seq + 1))
    code, report = verify()
    _failed_naming((code, report), f"record {seq}", "reordered")
    assert report["first_bad_id"] == seq


def test_review_audit_tail_truncation_with_head_moved_is_detected(attacker_copy):
    db_path, verify = attacker_copy
    with _db(db_path) as db:
        last = db.execute("SELECT max(seq) FROM audit").fetchone()[0]
        keep = last - 3
        db.execute("DELETE FROM audit WHERE seq > ?", (keep,))
        head = db.execute("SELECT hash FROM audit WHERE seq = ?", (keep,)).fetchone()[0]
        db.execute("UPDATE audit_head SET seq = ?, hash = ?", (keep, head))
    code, report = verify()
    text = _failed_naming((code, report), f"covers records up to {last}", "truncated")
    assert f"holds {keep} records" in text
    assert report["checked"] == keep


def _rechain(db: sqlite3.Connection, start: int, key: bytes | None) -> None:
    """Recompute every hash from `start` on by the published rule, head included."""
    prev = db.execute("SELECT hash FROM audit WHERE seq = ?", (start - 1,)).fetchone()
    prev = prev[0] if prev else audit.GENESIS
    rows = db.execute("SELECT seq, ts, kind, fields FROM audit WHERE seq >= ? ORDER BY seq",
                      (start,)).fetchall()
    for seq, ts, kind, fields in rows:
        digest = audit.record_hash(prev_hash=prev, seq=seq, ts=ts, kind=kind,
                                   fields_json=fields, key=key)
        db.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
        prev = digest
    db.execute("UPDATE audit_head SET hash = ?", (prev,))


@pytest.mark.parametrize("guess", [None, b"\0" * 32], ids=["unkeyed-sha256", "guessed-key"])
def test_review_audit_full_rechain_without_key_is_detected(attacker_copy, guess):
    db_path, verify = attacker_copy
    with _db(db_path) as db:
        seq = _started_seq(db)
        db.execute("UPDATE audit SET fields = json_set(fields, '$.command', 'true') "
                   "WHERE seq = ?", (seq,))
        _rechain(db, 1, guess)
    code, report = verify()
    words = ("re-chained without the key",) if guess is None else ("HMAC", "modified")
    text = _failed_naming((code, report), "record 1", *words)
    assert "different HMAC than when the checkpoint was signed" in text
    assert report["first_bad_id"] == 1


def test_review_audit_wipe_is_detected(attacker_copy):
    db_path, verify = attacker_copy
    with _db(db_path) as db:
        for table in ("audit", "audit_head", "audit_meta", "audit_checkpoint"):
            db.execute(f"DELETE FROM {table}")
    _failed_naming(verify(), "empty", "wiped")


def test_forged_checkpoint_without_the_signing_key_is_detected(colony_files, attacker_copy,
                                                               tmp_path):
    """Truncate, then append a checkpoint signed by the attacker's own key for the new tail."""
    _, sink, _, _ = colony_files
    db_path, verify = attacker_copy
    with _db(db_path) as db:
        keep = db.execute("SELECT max(seq) FROM audit").fetchone()[0] - 2
        db.execute("DELETE FROM audit WHERE seq > ?", (keep,))
        head = db.execute("SELECT hash FROM audit WHERE seq = ?", (keep,)).fetchone()[0]
        db.execute("UPDATE audit_head SET seq = ?, hash = ?", (keep, head))
    forged_sink = tmp_path / "forged"
    forged_sink.mkdir()
    lines = (sink / checkpoints.SINK_FILE).read_text().splitlines()
    last = json.loads(lines[-1])
    mine = checkpoints.load_signing_key(tmp_path / "mine.key")
    fake = checkpoints.sign(mine, {**{k: v for k, v in last.items()
                                      if k not in ("signature", "signer")},
                                   "last_record_id": keep, "last_hmac": head})
    (forged_sink / checkpoints.SINK_FILE).write_text(
        "\n".join([*lines[:-1], json.dumps(fake)]) + "\n")
    _failed_naming(verify(forged_sink), "signature does not verify")


def test_colony_refuses_a_checkpoint_dir_inside_its_data_dir(tmp_path):
    data_dir = tmp_path / "colony"
    config = tmp_path / "colony.yaml"
    config.write_text(f"checkpointDir: {data_dir / 'cp'}\ncheckpointSyslog: ''\n")
    run = coral_procs.coral("colony", "start", "--data-dir", str(data_dir), "--listen",
                            f"127.0.0.1:{coral_procs.free_port()}", "--config", str(config),
                            timeout=30)
    assert run.returncode == 1
    assert "inside the data directory" in run.stderr
