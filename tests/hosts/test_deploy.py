"""Issue 12, "Deploy over SSH": playbooks/deploy-coral.yml with an inventory of a colony
host and agent hosts (systemd hosts booted with systemd-nspawn, reached over SSH)."""

from __future__ import annotations

from tests.hosts.conftest import AGENTS, COLONY, recaps


def test_deploy_over_ssh_installs_enables_and_starts_the_units(deployed):
    run = deployed.first_run
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert deployed.agents() == {name: True for name in (COLONY, *AGENTS)}
    colony = deployed.host(COLONY)
    for name, units in ((COLONY, ("coral-colony", "coral-agent")),
                        *((agent, ("coral-agent",)) for agent in AGENTS)):
        host = deployed.host(name)
        for unit in units:
            out = host.ssh(f"systemctl is-enabled {unit}; systemctl is-active {unit}")
            assert out.stdout.split() == ["enabled", "active"], (name, unit, out)
        if name != COLONY:
            assert host.ssh("systemctl cat coral-colony").returncode != 0
    assert colony.ssh("test -s /var/lib/coral/colony/ca.crt").returncode == 0


def test_second_run_over_ssh_changes_nothing(ansible, deployed):
    """Idempotence: every host reports changed=0 on a second run."""
    run = deployed.playbook(ansible)
    assert run.returncode == 0, run.stdout[-6000:]
    rows = recaps(run.stdout)
    assert set(rows) == {COLONY, *AGENTS}
    assert {host: row["changed"] for host, row in rows.items()} == dict.fromkeys(rows, 0), \
        run.stdout[-6000:]


def test_check_diff_on_the_deployed_fleet_reports_no_changes(ansible, deployed):
    """--check --diff is honest: nothing would change, so nothing is reported."""
    run = deployed.playbook(ansible, "--check", "--diff")
    assert run.returncode == 0, run.stdout[-6000:]
    rows = recaps(run.stdout)
    assert {host: row["changed"] for host, row in rows.items()} == dict.fromkeys(rows, 0), \
        run.stdout[-6000:]


def test_check_diff_shows_a_pending_config_change_and_changes_nothing(ansible, deployed):
    agent = deployed.host(AGENTS[0])
    before = agent.ssh("cat /etc/coral/agent-config.yaml; systemctl show -p MainPID coral-agent")
    run = deployed.playbook(ansible, "--check", "--diff", "-e", "coral_agent_poll_interval=3s")
    assert run.returncode == 0, run.stdout[-6000:]
    rows = recaps(run.stdout)
    assert all(rows[name]["changed"] > 0 for name in (COLONY, *AGENTS)), run.stdout[-6000:]
    assert "-    pollInterval: 2s" in run.stdout and "+    pollInterval: 3s" in run.stdout
    after = agent.ssh("cat /etc/coral/agent-config.yaml; systemctl show -p MainPID coral-agent")
    assert after.stdout == before.stdout


def test_agent_hosts_hold_the_ca_and_their_own_certificate_not_a_token(deployed):
    """The CA came from the colony host; the one-time join token was redeemed (the agent
    holds its certificate) and the token file is no use twice."""
    colony_ca = deployed.host(COLONY).ssh("cat /var/lib/coral/colony/ca.crt").stdout
    for name in AGENTS:
        host = deployed.host(name)
        assert host.ssh("cat /etc/coral/colony-ca.crt").stdout == colony_ca
        ident = host.ssh("/opt/coral/venv/bin/coral agent identity --config "
                         "/etc/coral/agent-config.yaml --state-dir /var/lib/coral/agent")
        assert ident.returncode == 0, ident.stdout + ident.stderr
        assert name in ident.stdout
        mode = host.ssh("stat -c %a /etc/coral/join-token /etc/coral/agent-config.yaml")
        assert mode.stdout.split() == ["600", "600"], mode


def test_a_redeemed_join_token_replayed_from_another_host_gets_nothing(deployed):
    """Attacker on agent-2 who stole agent-1's join token file (left on agent-1 after the
    deploy): the colony refuses it, no certificate is issued, agent-1 stays linked; and no
    agent host holds an operator credential."""
    stolen = deployed.host(AGENTS[0]).ssh("cat /etc/coral/join-token").stdout.strip()
    assert stolen
    thief = deployed.host(AGENTS[1])
    setup = thief.ssh(
        "rm -rf /tmp/evil && mkdir -p /tmp/evil/state && chmod 700 /tmp/evil/state && "
        f"printf '%s\\n' '{stolen}' > /tmp/evil/token && chmod 600 /tmp/evil/token && "
        f"sed -e 's/id: {AGENTS[1]}$/id: {AGENTS[0]}/' "
        "-e 's#joinTokenFile: .*#joinTokenFile: /tmp/evil/token#' "
        "/etc/coral/agent-config.yaml > /tmp/evil/config.yaml && chmod 600 /tmp/evil/config.yaml")
    assert setup.returncode == 0, setup.stderr
    assert f"id: {AGENTS[0]}" in thief.ssh("cat /tmp/evil/config.yaml").stdout
    tried = thief.ssh("timeout 10 /opt/coral/venv/bin/coral agent start --config "
                      "/tmp/evil/config.yaml --state-dir /tmp/evil/state", timeout=40)
    assert tried.returncode == 124, tried.stdout + tried.stderr  # still waiting, not linked
    ident = thief.ssh("/opt/coral/venv/bin/coral agent identity --config /tmp/evil/config.yaml "
                      "--state-dir /tmp/evil/state")
    assert ident.returncode == 3, ident.stdout + ident.stderr  # no certificate was issued
    assert deployed.agents()[AGENTS[0]] is True
    token = deployed.host(COLONY).ssh("cat /var/lib/coral/colony/admin.token").stdout.strip()
    for name in AGENTS:
        found = deployed.host(name).ssh(f"grep -rlF '{token}' /etc /var/lib /opt/coral /root")
        assert found.stdout == "", (name, found.stdout)
    thief.ssh("rm -rf /tmp/evil")
