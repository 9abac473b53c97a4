"""Issue 6 modules in real ansible-playbook runs on the controller: coral_exec fan-out
controls (max_concurrency, stop_on_failure_percentage, progress lines), coral_audit_info
(filters, verify), coral_tap (pcap per target on the controller), RBAC denial through a
module."""

from __future__ import annotations

import shutil
import subprocess
import threading

import pytest

from tests.ansible_fleet.conftest import save_results

LOCAL = {"ansible_connection": "local",
         "ansible_python_interpreter": "{{ ansible_playbook_python }}"}


def run_local(fleet, name: str, tasks: list[dict], *, env: dict | None = None):
    """A localhost play; every registered result is saved to <name>-localhost.json."""
    names = [t["register"] for t in tasks if "register" in t]
    inventory = fleet.work / "localhost.ini"
    inventory.write_text("localhost\n")
    run = fleet.playbook([{"hosts": "localhost", "gather_facts": False, "vars": LOCAL,
                           "tasks": [*tasks, save_results(names, fleet.work / name)]}],
                         inventory=inventory, name=name, env=env)
    return run, (fleet.results(name, "localhost") if run.returncode == 0 else None)


def test_coral_exec_max_concurrency_runs_targets_one_at_a_time(fleet):
    script = "date +%s.%N; sleep 0.3; date +%s.%N"
    run, out = run_local(fleet, "serial", [{"coral.mesh.coral_exec": {
        "all": True, "command": script, "shell": True, "max_concurrency": 1},
        "register": "serial"}])
    assert run.returncode == 0, run.stdout[-3000:]
    rows = out["serial"]["results"]
    assert len(rows) == 3
    spans = sorted(tuple(float(x) for x in r["stdout"].split()) for r in rows)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"targets overlapped with max_concurrency=1: {spans}"
    progress = out["serial"]["progress"]
    assert [line.split("]")[0] for line in progress] == ["[1/3", "[2/3", "[3/3"]
    assert all(": ok rc=0" in line for line in progress)


def test_coral_exec_stop_on_failure_percentage_skips_the_rest(fleet):
    run, out = run_local(fleet, "stop", [{"coral.mesh.coral_exec": {
        "all": True, "command": "false", "max_concurrency": 1,
        "stop_on_failure_percentage": 10, "allow_failures": True}, "register": "stopped"}])
    assert run.returncode == 0, run.stdout[-3000:]
    statuses = sorted(r["status"] for r in out["stopped"]["results"])
    # the first failure stops the fan-out; the target already handed to the one worker
    # may still run, the last one is never started
    assert statuses in (["failed", "skipped", "skipped"], ["failed", "failed", "skipped"]), \
        out["stopped"]["results"]
    assert out["stopped"]["failed_targets"] == 3
    assert any("skipped" in line for line in out["stopped"]["progress"])


def test_coral_exec_rejects_bad_fanout_values(fleet):
    run, _ = run_local(fleet, "badfan", [{"coral.mesh.coral_exec": {
        "all": True, "command": "true", "stop_on_failure_percentage": 150}}])
    assert run.returncode != 0 and "stop_on_failure_percentage must be between 0 and 100" \
        in run.stdout


def test_coral_exec_rbac_denial_through_the_module(fleet):
    """The read-only identity is refused exec by the colony; the module fails and says so."""
    run, _ = run_local(fleet, "denied", [{"coral.mesh.coral_exec": {
        "agent": "host-1", "command": "true"}}],
        env={"CORAL_TOKEN": fleet.colony.tokens["viewer"], "CORAL_TOKEN_FILE": ""})
    assert run.returncode != 0
    assert "viewer" in run.stdout and "exec" in run.stdout, run.stdout[-3000:]
    assert any(r["kind"] != "started" for r in fleet.audit(requester="viewer"))


def test_coral_audit_info_filters_and_verifies(fleet):
    run, out = run_local(fleet, "auditinfo", [
        {"coral.mesh.coral_exec": {"agent": "host-2", "command": "echo audited-by-ansible"},
         "register": "ran"},
        {"coral.mesh.coral_audit_info": {"kind": "started", "agent": "host-2", "limit": 5,
                                          "tail": True, "verify": True}, "register": "audit"},
        {"coral.mesh.coral_audit_info": {"kind": "started"}, "register": "as_viewer",
         "environment": {"CORAL_TOKEN": fleet.colony.tokens["viewer"]}},
    ])
    assert run.returncode == 0, run.stdout[-3000:]
    records = out["audit"]["records"]
    assert records and all(r["kind"] == "started" and r["agent_id"] == "host-2"
                           for r in records)
    assert any(r["command"] == "echo audited-by-ansible" for r in records)
    assert out["ran"]["audit_ids"][0] in {r["id"] for r in records}
    verification = out["audit"]["verification"]
    assert verification["ok"] is True and verification["first_bad_id"] == 0
    assert verification["checked"] >= len(records)
    assert out["as_viewer"]["records"], "the read verb lets the viewer read the audit"


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
def test_coral_tap_writes_pcap_per_target_on_the_controller(fleet):
    dest = fleet.work / "tap" / "cap.pcap"
    dest.parent.mkdir()
    stop = threading.Event()

    def traffic():  # HTTP requests on the pod's loopback while the capture runs
        while not stop.wait(0.2):
            subprocess.run(["nsenter", f"--target={fleet.pod.pause_pid}", "--net", "busybox",
                            "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"],
                           capture_output=True, timeout=10)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        run, out = run_local(fleet, "tap", [{"coral.mesh.coral_tap": {
            "agent": "pod-payments.shop-7d9f", "filter": "tcp port 8080", "duration": 3,
            "max_packets": 20, "dest": str(dest)}, "register": "tap"}])
    finally:
        stop.set()
        thread.join()
    assert run.returncode == 0, run.stdout[-3000:]
    captures = out["tap"]["captures"]
    assert len(captures) == 1 and captures[0]["packets"] > 0 and not captures[0]["error"]
    assert captures[0]["path"] == str(dest)
    read = subprocess.run(["tcpdump", "-nr", str(dest)], capture_output=True, text=True)
    assert read.returncode == 0 and ".8080" in read.stdout
    assert len(read.stdout.splitlines()) == captures[0]["packets"]
