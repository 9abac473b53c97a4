"""Issue 2 acceptance: real colony + agent processes, `coral exec`, audit rows, restart."""

from __future__ import annotations

import json
import signal

from tests.support import coral_procs


def _exec(colony, *args):
    return coral_procs.coral("exec", *args, env=colony.operator_env)


def _audit(colony) -> list[dict]:
    with colony.client() as c:
        return c.audit()


def test_exec_by_service_runs_on_the_agent_and_prints_output(colony, fleet):
    run = _exec(colony, "--service", "api", "--", "echo", "hello from api")
    assert run.returncode == 0, run.stderr
    assert "=== web-1 [api]: exit 0" in run.stdout
    assert "hello from api" in run.stdout
    assert "db-1" not in run.stdout


def test_exec_all_reports_each_target_and_fails_when_one_fails(colony, fleet):
    run = _exec(colony, "--all", "-o", "json", "--shell", "--",
                'test "$(hostname)" && echo ran; exit 0')
    assert run.returncode == 0, run.stderr
    body = json.loads(run.stdout)
    assert sorted(r["agent"] for r in body["results"]) == ["db-1", "web-1"]
    assert all(r["rc"] == 0 and r["stdout"] == "ran\n" for r in body["results"])
    failing = _exec(colony, "--all", "--shell", "--", "exit 4")
    assert failing.returncode == 1
    assert failing.stdout.count("exit 4") == 2


def test_exec_by_selector_and_agent(colony, fleet):
    by_label = _exec(colony, "--selector", "tier=data", "-o", "json", "--", "true")
    assert [r["agent"] for r in json.loads(by_label.stdout)["results"]] == ["db-1"]
    by_agent = _exec(colony, "--agent", "web-1", "-o", "json", "--", "true")
    assert [r["agent"] for r in json.loads(by_agent.stdout)["results"]] == ["web-1"]


def test_argv_is_not_run_through_a_shell_unless_asked(colony, fleet):
    plain = _exec(colony, "--agent", "web-1", "-o", "json", "--", "echo", "$HOME;", "id")
    assert json.loads(plain.stdout)["results"][0]["stdout"] == "$HOME; id\n"
    shelled = _exec(colony, "--agent", "web-1", "-o", "json", "--shell", "--",
                    "echo", "a;", "echo b")
    assert json.loads(shelled.stdout)["results"][0]["stdout"] == "a\nb\n"


def test_timeout_and_output_cap_are_reported(colony, fleet):
    with colony.client() as c:
        from coral_lib import client
        slow = c.exec(client.Targeting(agent="web-1"), argv=["sleep", "30"], timeout=1)
        big = c.exec(client.Targeting(agent="web-1"), argv=["head", "-c", "5000", "/dev/zero"],
                     max_output=1000)
    assert slow.results[0]["timed_out"] and slow.results[0]["status"] == "timeout"
    assert slow.results[0]["duration"] < 10
    assert big.results[0]["truncated"] and len(big.results[0]["stdout"]) == 1000


def test_every_operation_has_started_and_finished_audit_rows(colony, fleet):
    run = _exec(colony, "--all", "-o", "json", "--", "uname", "-s")
    ids = json.loads(run.stdout)["audit_ids"]
    records = _audit(colony)
    started = {r["op_id"]: r for r in records if r["kind"] == "started"}
    finished = {r["op_id"]: r for r in records if r["kind"] == "finished"}
    assert len(ids) == 2 and {r["id"] for r in started.values()} >= set(ids)
    for op_id, start in started.items():
        end = finished[op_id]
        assert start["requester"] == "admin" and start["command"] == "uname -s"
        assert start["agent_id"] in {"web-1", "db-1"} and start["runtime"]
        assert end["exit_code"] == 0 and end["bytes_out"] == len("Linux\n")
        assert end["duration"] >= 0
    listed = coral_procs.coral("audit", "list", "-o", "json", env=colony.operator_env)
    # discovery events may have been appended since (host agents see every listener)
    listed_ids = [r["id"] for r in json.loads(listed.stdout)]
    assert listed.returncode == 0 and listed_ids[: len(records)] == [r["id"] for r in records]


def test_colony_restart_agents_come_back_registry_and_audit_intact(tmp_path, colony, fleet):
    _exec(colony, "--all", "--", "true")
    before = _audit(colony)
    with colony.client() as c:
        services_before = c.list_services()
    colony.stop(signal.SIGKILL)
    down = _exec(colony, "--all", "--", "true")
    assert down.returncode != 0 and colony.address in down.stderr
    colony.start()
    with colony.client() as c:  # registry survived the kill, before any agent is back
        assert c.list_services() == services_before
    coral_procs.wait_registered(colony, ["web-1", "db-1"])
    after = _audit(colony)
    assert after[: len(before)] == before
    run = _exec(colony, "--all", "--", "true")
    assert run.returncode == 0, run.stdout + run.stderr
    verify = coral_procs.coral("audit", "verify", env=colony.operator_env)
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"]


def test_bad_input_unknown_service_lists_close_matches(colony, fleet):
    run = _exec(colony, "--service", "apj", "--", "true")
    assert run.returncode == 1
    assert "unknown service 'apj'" in run.stderr and "api" in run.stderr


def test_bad_input_colony_unreachable_names_the_address(colony):
    port = coral_procs.free_port()
    env = {**colony.operator_env, "CORAL_COLONY_ADDRESS": f"127.0.0.1:{port}"}
    run = coral_procs.coral("agents", env=env)
    assert run.returncode == 1
    assert f"colony unreachable at 127.0.0.1:{port}" in run.stderr
    assert "Traceback" not in run.stderr


def test_bad_input_wrong_join_token_is_refused_logged_without_token_and_not_stored(tmp_path,
                                                                                   colony):
    wrong = "coral-join-not-a-token-0123456789"
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="intruder", join_token=wrong)
    agent.start()
    try:
        coral_procs.wait_for(lambda: "cannot join" in agent.log(), what="refusal in agent log")
    finally:
        agent.stop()
    with colony.client() as c:
        assert [a["agent_id"] for a in c.list_agents()] == []
        assert c.list_services() == []
    colony_log = colony.log_path.read_text()
    assert "join from" in colony_log and "unknown join token" in colony_log
    assert wrong not in colony_log and wrong not in agent.log()
    refusals = [r for r in _audit(colony) if r["kind"] == "refused" and r["verb"] == "join"]
    assert refusals and wrong not in json.dumps(refusals)


def test_single_service_agent_sending_only_component_name_keeps_working(colony,
                                                                            tmp_path):
    """A first-protocol-version agent registers with component_name and no services."""
    from tests.support import agent_identity

    with agent_identity.MeshAgent(colony, tmp_path, "legacy-1") as legacy:
        legacy.join()
        reply = legacy.stub.Register(agent_identity.mesh_pb2.RegisterRequest(
            component_name="billing", version="0.0.1"), timeout=10)
    assert reply.accepted
    with colony.client() as c:
        services = c.list_services(agent="legacy-1")
    assert [(s["component_name"], s["provenance"]) for s in services] == [("billing", "explicit")]
