"""Issue 12, "Life of a host": systemctl restart of agent and colony, a host reboot (the
agent comes back by itself), an agent host that cannot reach the colony at boot (retries
with backoff, clear log line), a colony host reboot (agents re-link)."""

from __future__ import annotations

from tests.hosts.conftest import AGENTS, COLONY
from tests.support import coral_procs

HOSTS = (COLONY, *AGENTS)


def _exec_ok(deployed, name: str) -> bool:
    out = deployed.coral("exec", "--agent", name, "--", "cat", "/etc/hostname")
    return out.returncode == 0 and name in out.stdout


def _main_pid(host, unit: str) -> str:
    return host.ssh(f"systemctl show -p MainPID --value {unit}").stdout.strip()


def test_systemctl_restart_of_agent_and_colony(deployed):
    agent = deployed.host(AGENTS[0])
    before = _main_pid(agent, "coral-agent")
    assert agent.ssh("systemctl restart coral-agent").returncode == 0
    assert _main_pid(agent, "coral-agent") != before
    colony = deployed.host(COLONY)
    assert colony.ssh("systemctl restart coral-colony").returncode == 0
    seen = deployed.wait_connected(HOSTS)
    assert seen == dict.fromkeys(HOSTS, True), seen
    assert _exec_ok(deployed, AGENTS[0])


def test_agent_host_reboot_brings_the_agent_back(deployed):
    host = deployed.host(AGENTS[1])
    assert host.reboot() == 133  # nspawn's "container is being rebooted"
    assert deployed.wait_connected([AGENTS[1]])[AGENTS[1]] is True
    assert host.ssh("systemctl is-active coral-agent").stdout.strip() == "active"
    assert _exec_ok(deployed, AGENTS[1])


def test_agent_that_cannot_reach_the_colony_at_boot_retries_and_says_so(deployed):
    colony, agent = deployed.host(COLONY), deployed.host(AGENTS[0])
    colony.stop()
    try:
        agent.reboot()

        def unreachable_lines() -> list[str]:
            log = agent.ssh("journalctl -b -u coral-agent --no-pager -o cat").stdout
            return [line for line in log.splitlines() if "colony unreachable at" in line
                    or "cannot join colony at" in line]

        # a few attempts with backoff: wait for the second, not a fixed time
        coral_procs.wait_for(lambda: len(unreachable_lines()) >= 2, timeout=60, interval=1.0,
                             what="two 'colony unreachable' attempts in the agent's journal")
        unreachable = unreachable_lines()
        assert deployed.settings["coral_colony_listen"] in unreachable[0]
        assert "retrying in" in unreachable[0]
        assert agent.ssh("systemctl is-active coral-agent").stdout.strip() == "active"
    finally:
        colony.boot()
    seen = deployed.wait_connected(HOSTS, timeout=120)
    assert seen == dict.fromkeys(HOSTS, True), seen
    assert _exec_ok(deployed, AGENTS[0])


def test_colony_host_reboot_agents_relink(deployed):
    colony = deployed.host(COLONY)
    assert colony.reboot() == 133
    assert colony.ssh("systemctl is-active coral-colony").stdout.strip() == "active"
    seen = deployed.wait_connected(HOSTS, timeout=120)
    assert seen == dict.fromkeys(HOSTS, True), seen
    for name in HOSTS:
        assert _exec_ok(deployed, name)
