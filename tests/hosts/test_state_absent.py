"""Issue 12, "state: absent leaves nothing behind (units, users, files, venvs)"; runs last
in this directory (it removes what the other modules use)."""

from __future__ import annotations

from tests.hosts.conftest import AGENTS, COLONY, recaps

LEFT = ("/etc/systemd/system/coral-agent.service /etc/systemd/system/coral-colony.service "
        "/etc/coral /opt/coral/venv /var/lib/coral/colony /var/lib/coral/colony-checkpoints "
        "/var/lib/coral/agent")


def test_state_absent_with_purge_leaves_nothing(ansible, deployed):
    run = deployed.playbook(ansible, "-e", "coral_state=absent",
                            "-e", "coral_agent_purge_data=true",
                            "-e", "coral_colony_purge_data=true")
    assert run.returncode == 0, run.stdout[-6000:]
    for name in (COLONY, *AGENTS):
        host = deployed.host(name)
        left = host.ssh(f"ls -d {LEFT} 2>/dev/null; getent passwd coral; "
                        "systemctl list-units --all --no-legend 'coral-*'; "
                        "pgrep -af 'venv/bin/[c]oral'")
        journal = host.ssh("journalctl --no-pager -n 30 -u coral-agent -u coral-colony; "
                           "ps -eo pid,ppid,stat,wchan:24,cgroup:48,args; "
                           "grep . /proc/[0-9]*/status 2>/dev/null | grep -E 'State|SigCgt|NSpid' ")
        assert left.stdout.strip() == "", f"{name}: {left.stdout}\n{journal.stdout}"
    again = deployed.playbook(ansible, "-e", "coral_state=absent")
    assert again.returncode == 0, again.stdout[-6000:]
    assert all(row["changed"] == 0 for row in recaps(again.stdout).values()), again.stdout[-4000:]
