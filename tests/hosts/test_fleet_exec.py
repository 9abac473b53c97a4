"""Issue 12, "Fleet exec across hosts through coral_exec, the inventory plugin and the
connection plugin, with per-host results and audit records that name each host"."""

from __future__ import annotations

import json

import yaml

from tests.hosts.conftest import AGENTS, COLONY

HOSTS = (COLONY, *AGENTS)


def _play(ansible, tmp_path, plays, inventory):
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(plays, sort_keys=False))
    return ansible.run("ansible-playbook", "-i", str(inventory), str(path))


def _audit(deployed) -> list[dict]:
    out = deployed.coral("audit", "list", "-o", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_coral_exec_runs_on_every_host_with_per_host_results(ansible, deployed, tmp_path):
    conn = deployed.admin_files(tmp_path)
    inventory = tmp_path / "local.ini"
    inventory.write_text('localhost ansible_connection=local '
                         'ansible_python_interpreter="{{ ansible_playbook_python }}"\n')
    out = tmp_path / "exec.json"
    run = _play(ansible, tmp_path, [{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [
            {"coral.mesh.coral_exec": {**conn, "all": True, "argv": ["cat", "/etc/hostname"]},
             "register": "ran"},
            {"ansible.builtin.copy": {"dest": str(out), "content": "{{ ran | to_json }}"}}]}],
        inventory)
    assert run.returncode == 0, run.stdout[-4000:]
    ran = json.loads(out.read_text())
    by_agent = {row["agent"]: row for row in ran["results"]}
    assert set(by_agent) == set(HOSTS)
    for name, row in by_agent.items():  # each command ran on its own host
        assert (row["rc"], row["stdout"]) == (0, f"{name}\n")
    audit = _audit(deployed)
    ids = {row["audit_id"] for row in ran["results"]}
    ops = {r["op_id"] for r in audit if r["id"] in ids}
    started = [r for r in audit if r["kind"] == "started" and r["op_id"] in ops]
    assert sorted(r["agent_id"] for r in started) == sorted(HOSTS), started
    assert all(r["command"] == "cat /etc/hostname" for r in started)


def test_inventory_and_connection_plugins_run_tasks_on_each_host(ansible, deployed, tmp_path):
    """coral.mesh.colony (host_per: agent) lists the hosts; ordinary tasks run on them
    through the agents (coral.mesh.coral connection), each audited under its host."""
    conn = deployed.admin_files(tmp_path)
    source = tmp_path / "fleet.colony.yml"
    source.write_text(yaml.safe_dump({"plugin": "coral.mesh.colony", "host_per": "agent",
                                      **conn}))
    listed = ansible.run("ansible-inventory", "-i", str(source), "--list")
    assert listed.returncode == 0, listed.stderr
    assert set(HOSTS) <= set(json.loads(listed.stdout)["_meta"]["hostvars"])
    marker = tmp_path / "out"
    run = _play(ansible, tmp_path, [{
        "hosts": "all", "gather_facts": False,
        "tasks": [
            {"ansible.builtin.command": "cat /etc/hostname", "register": "name"},
            {"ansible.builtin.copy": {"dest": f"{marker}-{{{{ inventory_hostname }}}}.txt",
                                      "content": "{{ name.stdout }}"},
             "delegate_to": "localhost",
             "vars": {"ansible_connection": "local",
                      "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}]}],
        source)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    for name in HOSTS:
        assert (tmp_path / f"out-{name}.txt").read_text() == name
    started = [r for r in _audit(deployed) if r["kind"] == "started"]
    assert set(HOSTS) <= {r["agent_id"] for r in started if "AnsiballZ" in r["command"]
                          or "/etc/hostname" in r["command"]}
