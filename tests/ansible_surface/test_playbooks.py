"""Issue 16, Ansible surface items 1, 4 and 9 on the shipped playbooks, run for real:
inventory variables win over the playbooks' own values; fleet_exec under --check; every
playbook by FQCN (coral.mesh.<name>) and by the documented hyphenated path."""

from __future__ import annotations

import pathlib
import sys

import pytest

from tests.ansible_surface.conftest import BIN, ROOT

PLAYBOOKS = ("deploy_coral", "rollout_coral", "fleet_exec")


def _fleet_exec(surface, how: str, *args: str, inventory: pathlib.Path | None = None):
    target = "coral.mesh.fleet_exec" if how == "fqcn" else str(ROOT / "playbooks/fleet-exec.yml")
    return surface.run(str(BIN / "ansible-playbook"), "-i", str(inventory or "localhost,"),
                       "-c", "local", target, *args, env=surface.as_ops())


@pytest.mark.parametrize("how", ["fqcn", "path"])
def test_item9_fleet_exec_runs_by_fqcn_and_by_hyphenated_path(surface, how):
    """Item 9: `ansible-playbook coral.mesh.fleet_exec` works, and so does
    playbooks/fleet-exec.yml; the interpreter defaults to the controller's Python (this
    test's venv has coral-lib; nothing under /opt/coral is used)."""
    marker = f"fleet-{how}"
    run = _fleet_exec(surface, how, "-e", f"coral_exec_command='echo {marker}'",
                      "-e", "coral_exec_service=api")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "stage-1                  api                 0" in run.stdout
    assert marker in run.stdout


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_item9_every_playbook_passes_syntax_check_by_fqcn_and_path(surface, playbook):
    hyphenated = ROOT / "playbooks" / f"{playbook.replace('_', '-')}.yml"
    for target in (f"coral.mesh.{playbook}", str(hyphenated)):
        run = surface.run(str(BIN / "ansible-playbook"), "-i", "localhost,", target,
                          "--syntax-check")
        assert run.returncode == 0, (target, run.stdout + run.stderr)


def test_item4_fleet_exec_under_check_lists_targets_and_runs_nothing(surface):
    """Item 4: "playbooks/fleet-exec.yml crashes under --check"."""
    before = len(surface.audit(kind="started"))
    run = _fleet_exec(surface, "path", "--check", "-e", "coral_exec_command='touch /x'",
                      "-e", "coral_exec_service=api")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "would run on 1 targets:" in run.stdout and "stage-1/api" in run.stdout
    assert "changed=1" in run.stdout  # what the real run would report
    assert len(surface.audit(kind="started")) == before


def test_item1_inventory_variables_win_over_the_playbooks(surface):
    """Item 1: "play-level vars: in deploy-coral.yml / rollout-coral.yml override inventory
    and AWX variables (inventory coral_mode ... silently ignored)". An inventory
    coral_mode=cluster (not a mode) must reach the mode check of both playbooks, and an
    inventory coral_python_interpreter must be the one fleet_exec runs the module with."""
    host = {"ansible_connection": "local", "coral_mode": "cluster", "coral_state": "present",
            "ansible_python_interpreter": sys.executable}
    inventory = surface.write("modes.yml", {"all": {"children": {"coral_clusters": {
        "hosts": {"localhost": host}}}}})
    for playbook, accepted in (("deploy-coral", "must be host"),
                               ("rollout-coral", "the rollout handles daemonset or webhook")):
        run = surface.run(str(BIN / "ansible-playbook"), "-i", str(inventory),
                          str(ROOT / "playbooks" / f"{playbook}.yml"))
        assert run.returncode != 0
        assert "coral_mode=cluster" in run.stdout and accepted in run.stdout, run.stdout[-2000:]
    bad = surface.write("interp.yml", {"all": {"hosts": {"localhost": {
        "ansible_connection": "local",
        "coral_python_interpreter": "/nonexistent/inventory-python"}}}})
    run = _fleet_exec(surface, "fqcn", "-e", "coral_exec_command=true",
                      "-e", "coral_exec_service=api", inventory=bad)
    assert run.returncode != 0 and "/nonexistent/inventory-python" in run.stdout
