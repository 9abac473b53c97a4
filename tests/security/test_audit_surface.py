"""Issue 6 acceptance (audit surface): `coral audit list` filters, `coral audit export`
JSON lines, `coral audit verify`; when the audit log cannot be written (disk full) an
operation is refused with a clear error and never runs, and the colony keeps serving reads."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.security import conftest
from tests.support import coral_procs


def test_audit_list_filters_export_and_verify(secured, tmp_path):
    run = coral_procs.coral("exec", "--service", "api", "--", "echo", "for-export",
                            env=secured.env_for("alice"))
    assert run.returncode == 0, run.stderr
    listed = coral_procs.coral("audit", "list", "--kind", "started", "--requester", "alice",
                               "-o", "json", env=secured.operator_env)
    rows = json.loads(listed.stdout)
    assert rows and {r["kind"] for r in rows} == {"started"}
    assert {r["requester"] for r in rows} == {"alice"}
    op_id = rows[-1]["op_id"]
    by_op = json.loads(coral_procs.coral("audit", "list", "--op-id", op_id, "-o", "json",
                                         env=secured.operator_env).stdout)
    assert [r["kind"] for r in by_op] == ["started", "entered", "finished"]
    out = tmp_path / "audit.jsonl"
    export = coral_procs.coral("audit", "export", "-o", str(out), env=secured.operator_env)
    assert export.returncode == 0, export.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == list(range(1, len(lines) + 1))
    assert any(r.get("command") == "echo for-export" for r in lines)
    assert f"exported {len(lines)} records" in export.stderr
    verify = coral_procs.coral("audit", "verify", env=secured.operator_env)
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True


def test_audit_read_needs_the_read_verb(secured):
    run = coral_procs.coral("audit", "list", env=secured.env_for("dave"))
    assert run.returncode == 1 and "no rule allows dave to read" in run.stderr


def test_disk_full_refuses_operations_and_keeps_serving_reads(tmp_path):
    data = tmp_path / "small"
    data.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(data)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    colony = conftest.PolicyColony(data / "colony").start()
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="full-1").start()
    try:
        coral_procs.wait_registered(colony, ["full-1"])
        filler = data / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        marker = tmp_path / "ran"
        run = coral_procs.coral("exec", "--agent", "full-1", "--", "touch", str(marker),
                                env=colony.operator_env)
        assert run.returncode == 1
        assert "could not be audited" in run.stdout + run.stderr
        assert "is full" in run.stdout + run.stderr
        assert not marker.exists()
        agents = coral_procs.coral("agents", "-o", "json", env=colony.operator_env)
        assert agents.returncode == 0
        assert [a["agent_id"] for a in json.loads(agents.stdout)] == ["full-1"]
        filler.unlink()
        again = coral_procs.coral("exec", "--agent", "full-1", "--", "touch", str(marker),
                                  env=colony.operator_env)
        assert again.returncode == 0, again.stderr
        assert marker.exists()
    finally:
        agent.stop()
        colony.stop()
        subprocess.run(["umount", "-l", str(data)], check=False)
