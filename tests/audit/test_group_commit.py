"""Group commit (issue 15, fan-out overhead): appends queued while another thread writes are
committed together, and each append still returns only once its own record is durable,
or raises when its transaction failed. Real SQLite files, real threads."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from coral_lib.colony import audit


def _queue_behind_the_lock(log: audit.AuditLog, count: int, fields) -> tuple[list, list]:
    """Hold the log's lock, start `count` appending threads, wait until all are queued,
    release: the first thread to take the lock commits them all."""
    results: list = [None] * count
    errors: list = [None] * count

    def append(i: int) -> None:
        try:
            results[i] = log.append("event", fields(i))
        except audit.AuditError as exc:
            errors[i] = exc

    log._lock.acquire()
    threads = [threading.Thread(target=append, args=(i,)) for i in range(count)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(log._group._queue) < count and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(log._group._queue) == count
    finally:
        log._lock.release()
    for t in threads:
        t.join(30)
    return results, errors


def test_appends_queued_meanwhile_share_one_transaction_each_gets_its_own_record(tmp_path):
    log = audit.AuditLog(tmp_path / "audit.db")
    log.append("event", {"n": -1})
    transactions = []
    real_write = log._write
    log._write = lambda work, **kw: (transactions.append(1), real_write(work, **kw))[1]
    seqs, errors = _queue_behind_the_lock(log, 20, lambda i: {"n": i})
    assert errors == [None] * 20
    assert len(transactions) == 1, "20 queued appends should be one commit (one fsync)"
    assert sorted(seqs) == list(range(2, 22))
    log.close()
    db = sqlite3.connect(tmp_path / "audit.db")
    for i, seq in enumerate(seqs):  # each caller got the seq of its own record
        (fields,) = db.execute("SELECT fields FROM audit WHERE seq = ?", (seq,)).fetchone()
        assert f'"n":{i}' in fields.replace(" ", "")
    db.close()
    reopened = audit.AuditLog(tmp_path / "audit.db")
    assert reopened.verify().ok and reopened.head()[0] == 21
    reopened.close()


def test_a_failed_group_commit_fails_every_append_in_it_and_writes_none(small_tmpfs):
    """Disk full during a group commit: every queued append raises, none is stored."""
    log = audit.AuditLog(small_tmpfs / "audit.db")
    log.append("event", {"n": 0})
    seqs, errors = _queue_behind_the_lock(log, 5, lambda i: {"n": i, "blob": "x" * 100_000})
    assert seqs == [None] * 5
    assert all(isinstance(e, audit.AuditError) for e in errors)
    assert log.verify().ok and log.head()[0] == 1
    assert log.append("event", {"n": 1}) == 2  # the log goes on after the failure
    log.close()


@pytest.mark.parametrize("threads", [16])
def test_concurrent_appends_keep_the_chain(tmp_path, threads):
    log = audit.AuditLog(tmp_path / "audit.db")
    seen: list[int] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        for i in range(25):
            seq = log.append("event", {"thread": k, "i": i})
            with lock:
                seen.append(seq)
    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert sorted(seen) == list(range(1, threads * 25 + 1))
    assert log.verify().ok
    log.close()


def test_entered_and_finished_are_one_transaction_after_the_command_ran(tmp_path):
    """Issue 15, "A quicker CLI": once a command ran, what the agent entered and how it
    ended are written in one transaction (one fsync instead of two), in that order, and
    both are durable before finished() returns. `started` stays its own commit, before
    the command runs."""
    log = audit.AuditLog(tmp_path / "audit.db")
    started = log.started(op_id="op/a//", requester="alice", verb="exec", agent_id="a",
                          runtime="host", service="", namespace="", pod="", provenance="agent",
                          command="true")
    transactions = []
    real_write = log._write
    log._write = lambda work, **kw: (transactions.append(1), real_write(work, **kw))[1]
    entered = {"op_id": "op/a//", "agent_id": "a", "node": "n1", "resolved_by": "host"}
    finished = log.finished(op_id="op/a//", status="ok", exit_code=0, duration=0.01,
                            bytes_out=0, entered=entered)
    assert len(transactions) == 1
    assert finished == started + 2
    records = log.list(op_id="op")
    assert [(r["id"], r["kind"]) for r in records] == [
        (started, "started"), (started + 1, "entered"), (finished, "finished")]
    assert records[1]["node"] == "n1" and records[2]["status"] == "ok"
    log.close()
    reopened = audit.AuditLog(tmp_path / "audit.db")  # durable, and the chain holds
    assert reopened.verify().ok and reopened.head()[0] == finished
    reopened.close()


def test_records_appended_together_are_written_all_or_none(small_tmpfs):
    """Disk full while writing entered + finished: finished() raises and neither is
    stored (a restart then marks the operation interrupted, as for a lost end record)."""
    log = audit.AuditLog(small_tmpfs / "audit.db")
    log.append("event", {"n": 0})
    with pytest.raises(audit.AuditError):
        log.finished(op_id="op", status="ok", exit_code=0, duration=0.0, bytes_out=0,
                     entered={"op_id": "op", "blob": "x" * 400_000})
    assert log.verify().ok and log.head()[0] == 1
    assert log.append_all([("event", {"n": 1}), ("event", {"n": 2})]) == [2, 3]
    log.close()
