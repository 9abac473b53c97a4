"""Issue 11, deployment: "The colony role deploys N replicas with the database settings."
A real ansible-playbook run of deploy-coral.yml over SSH to a systemd host (a
systemd-nspawn container, tests/support/nspawn.py) with two colony replicas on a real
PostgreSQL; the agent gets both addresses; the DSN stays out of the output. Each replica
runs under systemd with the single colony's hardened unit (issue 12): the dedicated
colony user, the sandbox, and its own checkpoint sink as the only place it writes
outside the data directory."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.ansible.conftest import recap
from tests.support import nspawn

HOST = "replicas-1"
DATA = "/var/lib/coral/colony"
ETC = "/etc/coral"
UNITS = ("coral-colony-0", "coral-colony-1")


@pytest.fixture
def host(tmp_path):
    missing = [t for t in ("systemd-nspawn", "mmdebstrap", "ssh") if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (tools/setup.sh)")
    fleet = nspawn.start_fleet(tmp_path / "fleet", [HOST])
    try:
        yield fleet
    finally:
        fleet.stop()


def _ssh(fleet: nspawn.Fleet, command: str, *, timeout: float = 60) -> str:
    out = fleet.hosts[HOST].ssh(command, timeout=timeout)
    assert out.returncode == 0, (command, out.stdout, out.stderr)
    return out.stdout.strip()


@pytest.mark.timeout(1200)  # the host's virtualenv installs coral-lib and psycopg first
def test_colony_role_deploys_hardened_replicas_sharing_postgresql(ansible, host, tmp_path,
                                                                  postgres_server):
    dsn = postgres_server.fresh_dsn().secret()
    listen = f"127.0.0.1:{nspawn.free_port()}"
    settings = {
        "coral_hosts": "all", "coral_colony_host": HOST, "coral_colony_listen": listen,
        "coral_lib_pip_spec": nspawn.coral_wheel(host.wheels),
        "coral_pip_extra_args": ["--no-index", "--find-links", nspawn.WHEELS_MOUNT],
        "coral_agent_poll_interval": "2s", "coral_colony_replicas": 2,
        "coral_colony_database": dsn, "coral_colony_replica_port_base": nspawn.free_port(),
    }
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text(yaml.safe_dump(settings))
    inventory = host.inventory({"coral_colony": [HOST], "coral_agents": [HOST]})

    def deploy(*extra: str):
        return ansible.run("ansible-playbook", "-i", str(inventory),
                           str(ansible.collection / "playbooks/deploy-coral.yml"),
                           "-e", f"@{vars_file}", *extra, timeout=900)
    try:
        run = deploy()
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert postgres_server.password not in run.stdout + run.stderr
        assert _ssh(host, f"cat {ETC}/colony-database.dsn") == dsn
        assert _ssh(host, f"stat -c '%a %U' {ETC}/colony-database.dsn") == "600 coral"

        # every replica: the hardened unit of the single colony, running as its user
        colony_uid = _ssh(host, "id -u coral")
        for index, unit in enumerate(UNITS):
            shown = dict(line.split("=", 1) for line in _ssh(
                host, f"systemctl show -p User -p NoNewPrivileges -p ProtectSystem "
                      f"-p PrivateUsers -p ReadWritePaths -p MainPID {unit}").splitlines())
            assert shown["User"] == "coral", shown
            assert (shown["NoNewPrivileges"], shown["ProtectSystem"], shown["PrivateUsers"]
                    ) == ("yes", "strict", "yes"), shown
            assert f"{DATA}-checkpoints-{index}" in shown["ReadWritePaths"], shown
            assert _ssh(host, f"ps -o uid= -p {shown['MainPID']}") == colony_uid, shown
            assert _ssh(host, f"stat -c '%a %U' {DATA}-checkpoints-{index}") == "700 coral"
        # one checkpoint key pair, made by `coral colony init` before any replica started
        assert _ssh(host, f"stat -c '%a %U' {DATA}/checkpoint.key {DATA}/checkpoint.pub"
                    ).splitlines() == ["600 coral", "644 coral"]

        host_address, port = listen.rsplit(":", 1)
        both = f"{host_address}:{port},{host_address}:{int(port) + 1}"
        assert both in _ssh(host, f"cat {ETC}/agent-config.yaml")  # it fails over

        again = deploy()
        assert recap(again.stdout)["changed"] == 0, again.stdout[-4000:]

        coral = (f"CORAL_CA_FILE={DATA}/ca.crt CORAL_TOKEN_FILE={DATA}/admin.token "
                 f"/opt/coral/venv/bin/coral")
        for address in (f"{host_address}:{port}", f"{host_address}:{int(port) + 1}"):
            out = _ssh(host, f"CORAL_COLONY_ADDRESS={address} {coral} exec --all -o json "
                             f"-- echo ok")  # each replica serves
            assert [r["stdout"] for r in json.loads(out)["results"]] == ["ok\n"]

        # a clean stop signs a last checkpoint into each replica's own sink: the hardened
        # units could write there, and the sinks verify against the shared chain
        _ssh(host, "systemctl stop " + " ".join(UNITS))
        sinks = " ".join(f"--checkpoints {DATA}-checkpoints-{i}" for i in range(2))
        report = json.loads(_ssh(
            host, f"{coral} audit verify {sinks} --data-dir {DATA} "
                  f"--database file:{ETC}/colony-database.dsn"))
        assert report["ok"] and report["checkpoints"] >= 2, report
    finally:
        deploy("-e", "coral_state=absent")
