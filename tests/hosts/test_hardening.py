"""Issue 12, "Hardened units": the colony runs as its own user with no capability and a
read-only system; the agent stays root with a bounded capability set; both keep working
(the other tests in this directory exercise them) and systemd-analyze scores them."""

from __future__ import annotations

import re

from tests.hosts.conftest import AGENTS, COLONY


def _show(host, unit: str, *props: str) -> dict[str, str]:
    out = host.ssh(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def _exposure(host, unit: str) -> float:
    out = host.ssh(f"systemd-analyze security {unit} --no-pager")
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", out.stdout)
    assert match, out.stdout[-2000:] + out.stderr
    return float(match.group(1))


def test_colony_unit_runs_as_its_own_user_without_capabilities(deployed):
    colony = deployed.host(COLONY)
    props = _show(colony, "coral-colony", "User", "NoNewPrivileges", "ProtectSystem",
                  "ProtectHome", "PrivateTmp", "CapabilityBoundingSet", "ReadWritePaths")
    assert props["User"] == "coral" and props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict" and props["ProtectHome"] == "yes"
    assert props["PrivateTmp"] == "yes" and props["CapabilityBoundingSet"] == ""
    assert "/var/lib/coral/colony" in props["ReadWritePaths"]
    pid = colony.ssh("systemctl show -p MainPID --value coral-colony").stdout.strip()
    status = colony.ssh(f"grep -E '^(Uid|CapEff|CapBnd)' /proc/{pid}/status").stdout
    assert "CapEff:\t0000000000000000" in status and "CapBnd:\t0000000000000000" in status
    assert colony.ssh("stat -c %U /var/lib/coral/colony/ca.key").stdout.strip() == "coral"
    assert _exposure(colony, "coral-colony") <= 2.5


def test_colony_cannot_write_outside_its_data_dir(deployed):
    """Attacker's view: code running as the colony, in the colony's own mount namespace,
    can write its data dir but not /etc or /usr, and cannot see /root."""
    colony = deployed.host(COLONY)
    pid = colony.ssh("systemctl show -p MainPID --value coral-colony").stdout.strip()
    as_colony = f"nsenter -t {pid} -m setpriv --reuid=coral --regid=coral --clear-groups"
    wrote = colony.ssh(f"{as_colony} touch /var/lib/coral/colony/probe && echo ok")
    assert wrote.stdout.strip() == "ok", wrote.stderr
    for path in ("/etc/coral-pwned", "/usr/coral-pwned", "/root/coral-pwned"):
        denied = colony.ssh(f"{as_colony} touch {path}")
        assert denied.returncode != 0, path
        assert colony.ssh(f"test -e {path}").returncode != 0
    colony.ssh("rm -f /var/lib/coral/colony/probe")


def test_agent_unit_is_bounded_to_its_capabilities(deployed):
    agent = deployed.host(AGENTS[0])
    props = _show(agent, "coral-agent", "NoNewPrivileges", "ProtectSystem", "ProtectHome",
                  "PrivateTmp", "CapabilityBoundingSet")
    assert props["NoNewPrivileges"] == "yes" and props["ProtectSystem"] == "full"
    assert props["ProtectHome"] == "read-only" and props["PrivateTmp"] == "yes"
    assert set(props["CapabilityBoundingSet"].split()) == {
        "cap_sys_ptrace", "cap_dac_read_search", "cap_kill", "cap_net_raw", "cap_net_admin",
        "cap_bpf", "cap_perfmon"}
    # commands the agent runs inherit the bounds: no module loading, no /usr writes
    out = deployed.coral("exec", "--agent", AGENTS[0], "--shell", "--",
                         "touch /usr/coral-pwned; echo rc=$?")
    assert "rc=1" in out.stdout, out.stdout + out.stderr
    assert _exposure(agent, "coral-agent") < 9.6  # Debian's ssh.service scores 9.6
