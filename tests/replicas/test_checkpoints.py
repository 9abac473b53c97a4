"""Issue 11, replicas: "The audit log stays one verifiable chain across replicas (...)
choose, document, test with `coral audit verify`" -- signed checkpoints per replica.

Every replica signs checkpoints of the one shared chain into its own sink, numbered per
replica and naming it, so each sink verifies alone and several verify together
(`coral audit verify --checkpoints DIR --checkpoints DIR2`). The attacker holds the
PostgreSQL database and the audit HMAC key, not the checkpoint keys nor the sinks.
Real replicas, a real host agent, a real PostgreSQL, the real `coral` command."""

from __future__ import annotations

import json
import pathlib
import shutil

import psycopg
import pytest

from coral_lib.colony import audit, checkpoints
from tests.support import coral_procs

EXECS = 3  # per replica: each exec appends a started and a finished record


@pytest.fixture
def checkpointed(replica_set, tmp_path):
    """Two replicas that audited execs through each, checkpointing every 2 records, then
    stopped cleanly (a last checkpoint each)."""
    config = tmp_path / "colony.yaml"
    config.write_text("checkpointEvery: 2\ncheckpointSyslog: ''\n")
    replica_set.start(2, extra=("--config", str(config)))
    agent = coral_procs.Agent(tmp_path / "agents", replica_set.view(0), agent_id="cp-1",
                              services=[{"name": "svc-cp", "port": 20100}]).start()
    try:
        coral_procs.wait_registered(replica_set.replicas[0], ["cp-1"], timeout=40)
        for replica in replica_set.replicas:  # r1 relays to r0, which holds the link
            for i in range(EXECS):
                run = coral_procs.coral("exec", "--agent", "cp-1", "--", "echo", f"op-{i}",
                                        env=replica.operator_env)
                assert run.returncode == 0, run.stdout + run.stderr
    finally:
        agent.stop()
        replica_set.stop()
    assert all(r.proc.returncode == 0 for r in replica_set.replicas)
    return replica_set


def _verify(replica_set, *sinks: pathlib.Path) -> tuple[int, dict | str]:
    """`coral audit verify` of the shared database against `sinks`, trusting one public
    key: the template's checkpoint.pub (the default of --data-dir), which `coral colony
    init` made with the one checkpoint key every replica signs with."""
    args = [a for sink in sinks for a in ("--checkpoints", str(sink))]
    run = coral_procs.coral("audit", "verify", *args, "--data-dir", str(replica_set.template),
                            "--database", f"file:{replica_set.dsn_file}")
    try:
        return run.returncode, json.loads(run.stdout)
    except ValueError:
        return run.returncode, run.stdout + run.stderr


def _failed(result: tuple[int, dict | str], *words: str) -> str:
    code, report = result
    assert code == 1 and isinstance(report, dict) and report["ok"] is False, report
    text = " ".join(report["problems"])
    for word in words:
        assert word in text, (word, report)
    return text


def _sink_checkpoints(sink: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (sink / checkpoints.SINK_FILE).read_text().splitlines()]


def test_each_replica_sink_verifies_alone_and_together_and_deletions_are_named(
        checkpointed, tmp_path):
    """Each replica's sink holds checkpoints 1..n naming that replica and the chain position
    (last_record_id) of the shared log; alone or together they verify. Then (on copies of
    the sinks) a checkpoint line deleted from r1's sink breaks r1's own numbering, named
    with the sink, and r1's whole checkpoint file deleted is reported naming that file."""
    counts = []
    for index in (0, 1):
        sink = checkpointed.sink(index)
        found = _sink_checkpoints(sink)
        assert [cp["seq"] for cp in found] == list(range(1, len(found) + 1)), found
        assert {cp["replica"] for cp in found} == {f"r{index}"}
        assert len(found) >= EXECS  # every 2 records, >= 2 * EXECS records of its own
        code, report = _verify(checkpointed, sink)
        assert code == 0 and report["ok"], report
        assert report["checkpoints"] == len(found)
        counts.append(len(found))
    code, report = _verify(checkpointed, checkpointed.sink(0), checkpointed.sink(1))
    assert code == 0 and report["ok"], report
    assert report["checkpoints"] == sum(counts)
    assert report["checked"] >= 4 * EXECS

    sinks = [tmp_path / "copies" / "r0", tmp_path / "copies" / "r1"]
    for index, copy in enumerate(sinks):
        shutil.copytree(checkpointed.sink(index), copy)
    lines = (sinks[1] / checkpoints.SINK_FILE).read_text().splitlines(keepends=True)
    (sinks[1] / checkpoints.SINK_FILE).write_text("".join([lines[0], *lines[2:]]))
    _failed(_verify(checkpointed, *sinks), "replica r1 checkpoint 3: does not follow "
            "checkpoint 1", str(sinks[1]))
    (sinks[1] / checkpoints.SINK_FILE).unlink()
    _failed(_verify(checkpointed, *sinks),
            f"{sinks[1] / checkpoints.SINK_FILE}: no checkpoints in this sink")


def test_rewrite_in_postgresql_with_the_key_is_caught_by_either_replicas_checkpoints(
        checkpointed):
    """The attacker edits the first operation's record in PostgreSQL and re-chains every
    record after it WITH the audit key: the HMAC chain holds, but every checkpoint that
    covered the record -- in either replica's sink -- names the rewrite."""
    key = audit.load_key(checkpointed.template / "audit.key", create=False)
    with psycopg.connect(checkpointed.dsn_file.read_text().strip()) as db:
        (start,) = db.execute("SELECT min(seq) FROM audit WHERE kind = 'started'").fetchone()
        db.execute("UPDATE audit SET fields = jsonb_set(fields::jsonb, '{command}', "
                   "'\"true\"')::text WHERE seq = %s", (start,))
        (prev,) = db.execute("SELECT hash FROM audit WHERE seq = %s", (start - 1,)).fetchone()
        rows = db.execute("SELECT seq, ts, kind, fields FROM audit WHERE seq >= %s "
                          "ORDER BY seq", (start,)).fetchall()
        for seq, ts, kind, fields in rows:
            digest = audit.record_hash(prev_hash=prev, seq=seq, ts=ts, kind=kind,
                                       fields_json=fields, key=key)
            db.execute("UPDATE audit SET prev_hash = %s, hash = %s WHERE seq = %s",
                       (prev, digest, seq))
            prev = digest
        db.execute("UPDATE audit_head SET hash = %s", (prev,))
    for index in (0, 1):
        sink = checkpointed.sink(index)
        code, report = _verify(checkpointed, sink)
        _failed((code, report), f"replica r{index} checkpoint",
                "different HMAC than when the checkpoint was signed (rewritten)", str(sink))
        # the re-keyed chain itself holds: only the checkpoints see the rewrite
        assert all("checkpoint" in problem for problem in report["problems"]), report
    _failed(_verify(checkpointed, checkpointed.sink(0), checkpointed.sink(1)),
            "replica r0 checkpoint", "replica r1 checkpoint", "rewritten")
