"""Audit records: started/finished pairs, interrupted operations, secrets, filters, export."""

from __future__ import annotations

import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import audit, discovery_record, secrets


@pytest.fixture
def log(tmp_path: pathlib.Path):
    log = audit.AuditLog(tmp_path / "audit.db")
    yield log
    log.close()


def _start(log: audit.AuditLog, op_id: str, **over) -> int:
    fields = dict(op_id=op_id, requester="alice", verb="exec", agent_id="agent-1",
                  runtime="host", service="api", namespace="payments", pod="api-0",
                  provenance="EXPLICIT", command="uname -a", approval_id="", decision_rule="r1")
    fields.update(over)
    return log.started(**fields)


def test_started_finished_pair_carries_every_operation_field(log: audit.AuditLog) -> None:
    first = _start(log, "op-1", approval_id="ap-9")
    second = log.finished(op_id="op-1", status="failed", exit_code=3, duration=1.25,
                          bytes_out=4096, error="")
    assert (first, second) == (1, 2)
    started, finished = log.list(op_id="op-1")
    assert started["kind"] == "started" and finished["kind"] == "finished"
    for key, value in dict(requester="alice", verb="exec", agent_id="agent-1", runtime="host",
                           service="api", namespace="payments", pod="api-0",
                           provenance="EXPLICIT", command="uname -a", approval_id="ap-9",
                           decision_rule="r1").items():
        assert started[key] == value, key
    assert finished.items() >= {"status": "failed", "exit_code": 3, "duration": 1.25,
                                "bytes_out": 4096}.items()
    assert finished["prev_hash"] == started["hash"]
    assert started["ts"] <= finished["ts"]


def test_finished_rejects_unknown_status(log: audit.AuditLog) -> None:
    with pytest.raises(ValueError, match="expected one of"):
        log.finished(op_id="x", status="great", exit_code=0, duration=0, bytes_out=0)
    assert log.list() == []


def test_reserved_field_names_are_refused(log: audit.AuditLog) -> None:
    with pytest.raises(ValueError, match="reserved"):
        log.append("custom", {"hash": "x"})


def test_refused_and_discovery_records(log: audit.AuditLog) -> None:
    log.refused(requester="bob", verb="shell", target="agent-2", command="sh",
                reason="observe-only", rule="observe_only")
    api = mesh_pb2.ServiceInfo(component_name="api", port=8080,
                               provenance=mesh_pb2.SERVICE_PROVENANCE_OVERRIDDEN)
    web = mesh_pb2.ServiceInfo(component_name="web", port=80)
    log.discovery(discovery_record.fields(agent_id="agent-2", added=[web], removed=[],
                                          changed=[api], now=[api, web]))
    refused, found = log.list()
    assert refused.items() >= {"kind": "refused", "requester": "bob",
                               "rule": "observe_only"}.items()
    assert found["added"] == ["///web:80"] and found["changed"] == []
    assert found["overridden"][0]["provenance"] == "SERVICE_PROVENANCE_OVERRIDDEN"
    assert found["overridden"][0]["port"] == 8080
    assert found["services"] == 2
    assert found["digest"] == discovery_record.set_digest([web, api])


def test_mark_interrupted_closes_every_open_operation_after_restart(tmp_path) -> None:
    """Acceptance: a crash between started and finished reads `interrupted` after restart."""
    path = tmp_path / "audit.db"
    log = audit.AuditLog(path)
    for op in ("op-1", "op-2", "op-3"):
        _start(log, op)
    log.finished(op_id="op-2", status="ok", exit_code=0, duration=0.1, bytes_out=3)
    log.close()
    log = audit.AuditLog(path)
    assert log.mark_interrupted() == 2
    assert log.mark_interrupted() == 0
    ends = {r["op_id"]: r["status"] for r in log.list(kind="finished")}
    assert ends == {"op-1": "interrupted", "op-2": "ok", "op-3": "interrupted"}
    assert log.verify().ok
    log.close()


_CHILD = """
import sys
from coral_lib.colony import audit
log = audit.AuditLog(sys.argv[1])
for i in range(100000):
    log.started(op_id=f"op-{i}", requester="alice", verb="exec", agent_id="a", runtime="host",
                service="s", namespace="", pod="", provenance="EXPLICIT", command="true")
    if i == 20:
        print("ready", flush=True)
    if i % 3:
        log.finished(op_id=f"op-{i}", status="ok", exit_code=0, duration=0.0, bytes_out=0)
"""


def test_kill_9_while_appending_leaves_verifiable_log_and_every_start_gets_an_end(
    tmp_path: pathlib.Path,
) -> None:
    """Acceptance: kill -9 mid-write; after restart the chain verifies and no start lacks an end."""
    path = tmp_path / "audit.db"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE,
                             cwd=pathlib.Path(__file__).parents[2])
    assert child.stdout.readline() == b"ready\n"
    time.sleep(0.2)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    log = audit.AuditLog(path)
    assert log.verify().ok
    assert log.mark_interrupted() >= 1
    started = {r["op_id"] for r in log.list(kind="started", limit=10**6)}
    ended = {r["op_id"] for r in log.list(kind="finished", limit=10**6)}
    assert started and started == ended
    assert log.verify().ok
    log.close()


def test_secrets_never_appear_in_records_or_the_database_file(tmp_path) -> None:
    """Acceptance: secrets never appear in records."""
    colony_secret = "colony-s3cret-Zq81"
    token = "tok-AbCdEf0123456789"
    secrets.register(colony_secret)
    try:
        path = tmp_path / "audit.db"
        log = audit.AuditLog(path)
        _start(log, "op-1", command=f"curl -H 'Authorization: Bearer {token}' "
                                    f"--data secret={colony_secret} http://x")
        log.append("register", {"agent_id": "a", "colony_secret": "anything-else",
                                "nested": {"api_key": "k-123456", "list": [colony_secret]},
                                "error": f"bad secret {colony_secret}"})
        log.finished(op_id="op-1", status="error", exit_code=None, duration=0.0, bytes_out=0,
                     error=f"mysql --password=hunter22 failed; token={token}")
        text = json.dumps(log.list())
        log.close()
        raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
        for needle in (colony_secret, token, "anything-else", "k-123456", "hunter22"):
            assert needle not in text, needle
            assert needle.encode() not in raw, needle
        assert "[redacted]" in text
    finally:
        secrets.forget(colony_secret)


def test_list_filters_and_since_with_a_fake_clock(tmp_path) -> None:
    now = [1000.0]
    log = audit.AuditLog(tmp_path / "audit.db", clock=lambda: now[0])
    _start(log, "op-1", requester="alice", agent_id="a1")
    now[0] = 2000.0
    _start(log, "op-2", requester="bob", agent_id="a2")
    log.finished(op_id="op-2", status="ok", exit_code=0, duration=0.0, bytes_out=0)
    assert [r["op_id"] for r in log.list(requester="bob")] == ["op-2"]
    assert [r["op_id"] for r in log.list(agent_id="a1")] == ["op-1"]
    assert [r["id"] for r in log.list(since=1500.0)] == [2, 3]
    assert [r["id"] for r in log.list(kind="started", limit=1)] == [1]
    assert [r["id"] for r in log.list(after_id=2)] == [3]
    assert [r["id"] for r in log.list(limit=2, tail=True)] == [2, 3]
    assert len(log.list(kind="", requester="", agent_id="", op_id="", since=0)) == 3
    log.close()


def test_export_jsonl_writes_one_parsable_line_per_record(log: audit.AuditLog) -> None:
    _start(log, "op-1")
    log.finished(op_id="op-1", status="ok", exit_code=0, duration=0.5, bytes_out=10)
    out = io.StringIO()
    assert audit.export_jsonl(log.list(), out) == 2
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines == log.list()


def test_concurrent_appends_from_many_threads_keep_the_chain(log: audit.AuditLog) -> None:
    ids: list[int] = []

    def worker(n: int) -> None:
        for i in range(50):
            ids.append(log.append("event", {"thread": n, "i": i}))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    # verify reads a consistent snapshot while the appends go on
    while any(t.is_alive() for t in threads):
        assert log.verify().ok
    for t in threads:
        t.join()
    assert sorted(ids) == list(range(1, 401))
    assert log.verify() == audit.VerifyResult(True, 400, None, "400 records, chain intact")
