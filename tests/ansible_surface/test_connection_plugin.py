"""Issue 16, Ansible surface items 3 and 5 on the coral.mesh.coral connection plugin:
approval options, and output past max_output as a catchable task error (never
UNREACHABLE), through real ansible-playbook runs against real host agents."""

from __future__ import annotations

import sys

import pytest

from tests.ansible_surface.conftest import Approver, save_task


@pytest.fixture(scope="module")
def hosts(surface):
    """A static inventory reaching both host agents through the connection plugin."""
    return surface.write("coral-hosts.yml", {"all": {"hosts": {
        "stage-1": {}, "prod-1": {}}, "vars": {
        "ansible_connection": "coral.mesh.coral",
        "ansible_python_interpreter": sys.executable}}})


def _play(host: str, tasks: list[dict], prefix, **play_vars) -> list[dict]:
    return [{"hosts": host, "gather_facts": False, "vars": play_vars,
             "tasks": [*tasks, save_task([t["register"] for t in tasks if "register" in t],
                                         prefix)]}]


def test_item5_output_past_max_output_is_a_catchable_error_not_unreachable(surface, hosts):
    """Item 5: "the connection plugin fails as UNREACHABLE above 3 MiB": a task error that
    rescue handles, naming ansible_coral_max_output."""
    prefix = surface.work / "bigout"
    tasks = [{"block": [{"ansible.builtin.raw": "yes x | head -c 3500000", "register": "big"}],
              "rescue": [{"ansible.builtin.set_fact": {
                  "caught": "{{ ansible_failed_result.msg }}"}}]},
             {"ansible.builtin.raw": "yes x | head -c 3500000", "register": "raised",
              "vars": {"ansible_coral_max_output": 4 << 20}},
             {"ansible.builtin.debug": {"var": "caught"}, "register": "shown"}]
    run = surface.playbook(_play("stage-1", tasks, prefix), inventory=hosts)  # as admin
    assert run.returncode == 0, run.stdout[-3000:]
    assert "UNREACHABLE" not in run.stdout and "rescued=1" in run.stdout
    out = surface.saved("bigout", "stage-1")
    assert "exceeded ansible_coral_max_output=3145728" in out["shown"]["caught"]
    assert len(out["raised"]["stdout"]) == 3500000


def test_item3_connection_fails_catchably_with_the_approval_id(surface, hosts):
    """Item 3, connection plugin: a command held for approval fails the task (rescue-able)
    with ApprovalPending and the id, instead of hanging."""
    prefix = surface.work / "connheld"
    tasks = [{"block": [{"ansible.builtin.raw": "echo held", "register": "held"}],
              "rescue": [{"ansible.builtin.set_fact": {
                  "caught": "{{ ansible_failed_result.msg }}"}}]},
             {"ansible.builtin.debug": {"var": "caught"}, "register": "shown"}]
    run = surface.playbook(_play("prod-1", tasks, prefix), inventory=hosts,
                           env=surface.as_identity("gated"))
    assert run.returncode == 0 and "UNREACHABLE" not in run.stdout, run.stdout[-3000:]
    caught = surface.saved("connheld", "prod-1")["shown"]["caught"]
    assert "ApprovalPending" in caught and "approval_id=" in caught, caught
    pending = caught.rsplit("approval_id=", 1)[1].rstrip(")")
    with surface.colony.client_for("approver") as c:
        assert c.approval(pending)["state"] == "pending"


def test_item3_connection_waits_for_approval_when_told(surface, hosts):
    prefix = surface.work / "connwait"
    tasks = [{"ansible.builtin.raw": "echo approved-run", "register": "ran"}]
    with Approver(surface.colony) as approver:
        run = surface.playbook(_play("prod-1", tasks, prefix, ansible_coral_wait_for_approval=True,
                                     ansible_coral_approval_timeout=60),
                               inventory=hosts, env=surface.as_identity("gated"))
    assert run.returncode == 0, run.stdout[-3000:]
    assert surface.saved("connwait", "prod-1")["ran"]["stdout"].strip() == "approved-run"
    assert approver.approved
