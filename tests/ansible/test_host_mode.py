"""Issue 2, host mode end to end with real ansible-playbook runs on localhost:
deploy-coral.yml deploys colony + agent and waits until the agent is registered; the roles
are idempotent and honest in check mode; fleet-exec.yml prints a per-target table;
coral.mesh.coral_exec / coral_services_info behave as documented; state=absent removes it."""

from __future__ import annotations

import json
import subprocess

import psutil
import pytest
import yaml

from coral_lib import supervise
from tests.ansible.conftest import BIN, load, recap, write_results_play


def test_deploy_coral_host_mode_registers_the_agent(ansible, deployed):
    run = deployed.first_run
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert recap(run.stdout)["failed"] == 0
    agents = json.loads(deployed.coral(ansible, "agents", "-o", "json").stdout)
    assert [(a["agent_id"], a["connected"]) for a in agents] == [("host-agent", True)]
    for unit in ("coral-colony", "coral-agent"):  # no systemd here: the coral supervisor
        state = supervise.status(deployed.pid_file(unit))
        assert state.running and state.argv[0] == f"{deployed.settings['coral_venv']}/bin/coral"


def test_item7_installing_coral_lib_leaves_the_installed_collection_intact(ansible, deployed):
    """Issue 16 item 7: "pip install <collection dir> writes build/ and egg-info into the
    installed collection (ansible-galaxy collection verify then fails)"."""
    assert deployed.first_run.returncode == 0, deployed.first_run.stdout[-4000:]
    found = [p.name for p in ansible.collection.iterdir() if p.name == "build"
             or p.name.endswith(".egg-info")]
    assert found == []
    verify = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "verify", "coral.mesh", "--offline",
         "-p", str(ansible.collection.parents[2])], env=ansible.env, capture_output=True,
        text=True, timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_second_run_reports_no_changes(ansible, deployed):
    """Idempotence: a second run of the roles changes nothing and restarts nothing."""
    units = ("coral-colony", "coral-agent")
    before = {u: supervise.status(deployed.pid_file(u)).pid for u in units}
    run = ansible.playbook("playbooks/deploy-coral.yml", "-e", f"@{deployed.vars_file}")
    assert run.returncode == 0, run.stdout[-4000:]
    assert recap(run.stdout)["changed"] == 0, run.stdout[-4000:]
    after = {u: supervise.status(deployed.pid_file(u)).pid for u in before}
    assert after == before


def test_check_mode_on_the_deployed_host_reports_no_changes(ansible, deployed):
    run = ansible.playbook("playbooks/deploy-coral.yml", "-e", f"@{deployed.vars_file}",
                           "--check")
    assert run.returncode == 0, run.stdout[-4000:]
    assert recap(run.stdout)["changed"] == 0, run.stdout[-4000:]


def test_fleet_exec_prints_a_per_target_table(ansible, deployed):
    run = ansible.playbook(
        "playbooks/fleet-exec.yml",
        "-e", f"coral_python_interpreter={deployed.settings['coral_venv']}/bin/python",
        "-e", f"coral_colony_address={deployed.address}",
        "-e", f"coral_colony_data_dir={deployed.data_dir}",
        "-e", "coral_exec_service=api", "-e", "coral_exec_command='echo fleet-table-ok'")
    assert run.returncode == 0, run.stdout[-4000:]
    header = next(line for line in run.stdout.splitlines() if "AGENT" in line and "RC" in line)
    row = next(line for line in run.stdout.splitlines()
               if "fleet-table-ok" in line and "host-agent" in line)
    assert "SERVICE" in header and "OUTPUT" in header
    assert "host-agent" in row and " api " in row and " 0 " in row


def test_fleet_exec_fails_after_the_table_when_a_target_fails(ansible, deployed):
    run = ansible.playbook(
        "playbooks/fleet-exec.yml",
        "-e", f"coral_python_interpreter={deployed.settings['coral_venv']}/bin/python",
        "-e", f"coral_colony_address={deployed.address}",
        "-e", f"coral_colony_data_dir={deployed.data_dir}",
        "-e", "coral_exec_all=true", "-e", "coral_exec_command='sh -c \"exit 7\"'")
    assert run.returncode != 0
    assert "1 of 1 targets failed" in run.stdout
    assert any("host-agent" in line and " 7 " in line for line in run.stdout.splitlines())


def test_coral_exec_module_results_check_mode_failures_and_audit(ansible, deployed, tmp_path):
    out = tmp_path / "results.json"
    play = write_results_play(tmp_path / "play.yml", deployment=deployed, out=out, tasks=[
        {"name": "check mode resolves, runs nothing",
         "coral.mesh.coral_exec": {"service": "api", "command": "touch " + str(tmp_path / "ran")},
         "check_mode": True, "register": "checked"},
        {"name": "argv without a shell",
         "coral.mesh.coral_exec": {"service": "api", "argv": ["echo", "$HOME", "a b"]},
         "register": "plain"},
        {"name": "a shell when asked",
         "coral.mesh.coral_exec": {"agent": "host-agent", "command": "echo $((6 * 7))",
                                   "shell": True}, "register": "shelled"},
        {"name": "selector targeting",
         "coral.mesh.coral_exec": {"selector": {"env": "test"}, "command": "true"},
         "register": "selected"},
        {"name": "a failing target fails the task",
         "coral.mesh.coral_exec": {"all": True, "argv": ["sh", "-c", "echo oops >&2; exit 3"]},
         "register": "failing", "ignore_errors": True},
        {"name": "unless failures are allowed",
         "coral.mesh.coral_exec": {"all": True, "argv": ["false"], "allow_failures": True},
         "register": "allowed"},
        {"name": "timeout",
         "coral.mesh.coral_exec": {"all": True, "argv": ["sleep", "5"], "timeout": 0.5},
         "register": "slow", "ignore_errors": True},
        {"name": "unknown service",
         "coral.mesh.coral_exec": {"service": "apx", "command": "true"},
         "register": "unknown", "ignore_errors": True},
        {"name": "targetings combine to narrow, as the colony accepts them",
         "coral.mesh.coral_exec": {"service": "api", "all": True, "command": "true"},
         "register": "combined", "ignore_errors": True},
        {"name": "no targeting",
         "coral.mesh.coral_exec": {"command": "true"},
         "register": "untargeted", "ignore_errors": True},
        {"name": "a namespace alone selects (issue 16); this one holds nothing",
         "coral.mesh.coral_exec": {"namespace": "shop", "command": "true"},
         "register": "emptyns", "ignore_errors": True},
        {"name": "command and argv",
         "coral.mesh.coral_exec": {"all": True, "command": "true", "argv": ["true"]},
         "register": "both", "ignore_errors": True},
        {"name": "wrong token",
         "coral.mesh.coral_exec": {"all": True, "command": "true", "colony_token": "nope"},
         "register": "badtoken", "ignore_errors": True},
    ])
    run = ansible.playbook(play)
    assert run.returncode == 0, run.stdout[-6000:]
    r = load(out)

    checked = r["checked"]
    # issue 16 item 4: check mode predicts what the real run reports (it would run: changed)
    assert checked["changed"] is True and checked["results"] == [] and checked["audit_ids"] == []
    assert [(t["agent"], t["service"]) for t in checked["targets"]] == [("host-agent", "api")]
    assert not (tmp_path / "ran").exists()

    plain = r["plain"]
    assert plain["changed"] is True and plain["argv"] == ["echo", "$HOME", "a b"]
    (row,) = plain["results"]
    assert (row["agent"], row["service"], row["rc"], row["stdout"]) == (
        "host-agent", "api", 0, "$HOME a b\n")
    assert set(row) >= {"stderr", "duration", "truncated", "audit_id", "status"}
    assert plain["audit_ids"]

    assert r["shelled"]["results"][0]["stdout"] == "42\n"
    assert r["selected"]["results"][0]["rc"] == 0

    failing = r["failing"]
    assert failing["failed"] is True and failing["changed"] is True
    assert failing["results"][0]["rc"] == 3 and failing["results"][0]["stderr"] == "oops\n"
    assert "1 of 1 targets failed: host-agent: rc=3" in failing["msg"]

    allowed = r["allowed"]
    assert allowed.get("failed", False) is False and allowed["failed_targets"] == 1

    assert r["slow"]["failed"] is True and r["slow"]["results"][0]["timed_out"] is True

    assert r["unknown"]["failed"] is True and r["unknown"]["error_kind"] == "NoTargets"
    assert "did you mean: api" in r["unknown"]["msg"]
    # operator.targeting: the module accepts what the colony accepts (issue 15)
    assert r["combined"].get("failed", False) is False, r["combined"]
    assert [row["service"] for row in r["combined"]["results"]] == ["api"]
    assert r["untargeted"]["failed"] is True and r["untargeted"]["error_kind"] == "NoTargets"
    assert "no targeting given: use a service, agent, selector, pod, namespace, node or all" in \
        r["untargeted"]["msg"]
    assert not r["untargeted"].get("audit_ids")  # refused before anything reached the colony
    assert r["emptyns"]["failed"] is True and r["emptyns"]["error_kind"] == "NoTargets"
    assert "no service or pod in namespace 'shop'" in r["emptyns"]["msg"]
    assert "mutually exclusive" in r["both"]["msg"]
    assert r["badtoken"]["error_kind"] == "Unauthenticated"
    assert "nope" not in json.dumps(r["badtoken"])  # no_log: the token never comes back

    audit = json.loads(deployed.coral(ansible, "audit", "list", "-o", "json").stdout)
    ids = {row["id"] for row in audit}
    assert set(plain["audit_ids"]) <= ids and set(failing["audit_ids"]) <= ids
    assert "touch" not in json.dumps(audit)  # check mode ran (and audited) nothing


def test_coral_services_info_filters(ansible, deployed, tmp_path):
    out = tmp_path / "results.json"
    play = write_results_play(tmp_path / "play.yml", deployment=deployed, out=out, tasks=[
        {"coral.mesh.coral_services_info": {}, "register": "everything"},
        {"coral.mesh.coral_services_info": {"name": "api", "provenance": "explicit",
                                            "labels": {"env": "test"}}, "register": "api"},
        {"coral.mesh.coral_services_info": {"agent": "nobody"}, "register": "nobody"},
        {"coral.mesh.coral_services_info": {"name": "api"}, "check_mode": True,
         "register": "checked"},
        {"coral.mesh.coral_services_info": {"limit": 1}, "register": "one"},
    ])
    run = ansible.playbook(play)
    assert run.returncode == 0, run.stdout[-6000:]
    r = load(out)
    assert any(s["component_name"] == "api" for s in r["everything"]["services"])
    (api,) = r["api"]["services"]
    assert (api["agent"], api["port"], api["provenance"]) == ("host-agent", 18080, "explicit")
    assert r["api"]["changed"] is False
    assert r["nobody"]["services"] == [] and r["nobody"]["agents"] == []
    assert r["checked"]["services"] == r["api"]["services"]
    # limit (issue 11: no answer holds the whole registry): the first service, and whether
    # more matched
    assert r["one"]["services"] == r["everything"]["services"][:1]
    assert r["one"]["services_truncated"] is (len(r["everything"]["services"]) > 1)
    assert r["everything"]["services_truncated"] is False


@pytest.mark.slow
def test_changed_agent_config_restarts_only_the_agent(ansible, deployed):
    colony = supervise.status(deployed.pid_file("coral-colony")).pid
    agent = supervise.status(deployed.pid_file("coral-agent")).pid
    run = ansible.playbook("playbooks/deploy-coral.yml", "-e", f"@{deployed.vars_file}",
                           "-e", "coral_agent_poll_interval=2s")
    assert run.returncode == 0, run.stdout[-4000:]
    assert supervise.status(deployed.pid_file("coral-colony")).pid == colony
    assert supervise.status(deployed.pid_file("coral-agent")).pid != agent
    config = (deployed.root / "etc" / "agent-config.yaml").read_text()
    assert "pollInterval: 2s" in config
    agents = json.loads(deployed.coral(ansible, "agents", "-o", "json").stdout)
    assert [(a["agent_id"], a["connected"]) for a in agents] == [("host-agent", True)]


def test_item11_users_notify_the_roles_restart_handlers(ansible, deployed, tmp_path):
    """Issue 16 item 11: "restarts through handlers users can notify"."""
    colony = supervise.status(deployed.pid_file("coral-colony")).pid
    play = tmp_path / "notify.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "roles": ["coral.mesh.colony", "coral.mesh.agent_host"],
        "tasks": [{"name": "a change of the user's own", "ansible.builtin.command": "true",
                   "changed_when": True, "notify": "restart coral colony"}]}]))
    run = ansible.playbook(play, "-e", f"@{deployed.vars_file}",
                           "-e", "coral_agent_poll_interval=2s")
    assert run.returncode == 0, run.stdout[-4000:]
    assert "RUNNING HANDLER [coral.mesh.colony : Restart coral colony]" in run.stdout
    after = supervise.status(deployed.pid_file("coral-colony"))
    assert after.running and after.pid != colony
    deployed.coral(ansible, "agents")  # the colony answers again


def test_state_absent_removes_it_and_is_idempotent(ansible, deployed):
    pids = [supervise.status(deployed.pid_file(u)).pid for u in ("coral-colony", "coral-agent")]
    children = [c for pid in pids for c in psutil.Process(pid).children(recursive=True)]
    # issue 16 item 4, "the removal path under-predicts": --check predicts the real run
    checked = ansible.playbook("playbooks/deploy-coral.yml", "-e", f"@{deployed.vars_file}",
                               "-e", "coral_state=absent", "--check")
    assert checked.returncode == 0, checked.stdout[-4000:]
    assert all(psutil.pid_exists(p) for p in pids), "check mode stopped something"
    run = ansible.playbook("playbooks/deploy-coral.yml", "-e", f"@{deployed.vars_file}",
                           "-e", "coral_state=absent")
    deployed.removed = True
    assert run.returncode == 0, run.stdout[-4000:]
    assert recap(run.stdout)["changed"] > 0
    assert recap(checked.stdout)["changed"] == recap(run.stdout)["changed"], \
        checked.stdout + "\n----- the real run -----\n" + run.stdout
    for proc in [psutil.Process(p) for p in pids if psutil.pid_exists(p)] + children:
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    assert not (deployed.root / "etc" / "agent-config.yaml").exists()
    assert not (deployed.root / "etc" / "colony.yaml").exists()
    again = ansible.playbook("playbooks/deploy-coral.yml", "-e", f"@{deployed.vars_file}",
                             "-e", "coral_state=absent")
    assert again.returncode == 0 and recap(again.stdout)["changed"] == 0
