"""Booted systemd hosts over SSH for the host-fleet tests (issue 12).

One fleet for the directory (booting is quick, deploying is not; the modules run in name
order and test_state_absent.py, which removes everything, comes last): a colony host that also
runs an agent, and two agent hosts, each a systemd-nspawn container with systemd as PID 1
and its own sshd on a loopback port (tests/support/nspawn.py). coral installs offline on
them from the wheelhouse bind-mounted at /opt/coral-wheels.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import subprocess
import time

import pytest
import yaml

from tests.ansible.conftest import Ansible, ansible, recap  # noqa: F401 (session fixture)
from tests.support import nspawn

ROOT_DIR = pathlib.Path(__file__).resolve().parents[2]
COLONY = "colony-1"
AGENTS = ("agent-1", "agent-2")


def _can_boot() -> str:
    missing = [tool for tool in ("systemd-nspawn", "mmdebstrap", "ssh") if not shutil.which(tool)]
    return f"needs {', '.join(missing)} (tools/setup.sh)" if missing else ""


@dataclasses.dataclass
class Deployed:
    """A fleet with coral deployed by playbooks/deploy-coral.yml."""

    fleet: nspawn.Fleet
    inventory: pathlib.Path
    vars_file: pathlib.Path
    settings: dict
    first_run: subprocess.CompletedProcess

    def host(self, name: str) -> nspawn.Host:
        return self.fleet.hosts[name]

    def coral(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """The coral CLI on the colony host as its admin, over SSH."""
        data = self.settings["coral_colony_data_dir"]
        command = (f"CORAL_COLONY_ADDRESS={self.settings['coral_colony_listen']} "
                   f"CORAL_CA_FILE={data}/ca.crt CORAL_TOKEN_FILE={data}/admin.token "
                   f"{self.settings['coral_venv']}/bin/coral " + " ".join(args))
        return self.host(COLONY).ssh(command, timeout=timeout)

    def admin_files(self, directory: pathlib.Path) -> dict[str, str]:
        """The colony CA and admin token copied to the controller (module options)."""
        data = self.settings["coral_colony_data_dir"]
        files = {}
        for option, name in (("colony_ca_file", "ca.crt"), ("colony_token_file", "admin.token")):
            out = self.host(COLONY).ssh(f"cat {data}/{name}")
            assert out.returncode == 0, out.stderr
            (directory / name).write_text(out.stdout)
            (directory / name).chmod(0o600)
            files[option] = str(directory / name)
        return {"colony_address": self.settings["coral_colony_listen"], **files}

    def wait_connected(self, names, *, timeout: float = 90) -> dict[str, bool]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                seen = self.agents()
            except (AssertionError, subprocess.TimeoutExpired, json.JSONDecodeError):
                seen = {}
            if all(seen.get(name) for name in names) or time.monotonic() > deadline:
                return seen
            time.sleep(1)

    def agents(self) -> dict[str, bool]:
        out = self.coral("agents", "-o", "json")
        assert out.returncode == 0, out.stderr
        return {a["agent_id"]: a["connected"] for a in json.loads(out.stdout)}

    def playbook(self, ansible: Ansible, *args: str,  # noqa: F811
                 playbook: str = "playbooks/deploy-coral.yml") -> subprocess.CompletedProcess:
        return ansible.run("ansible-playbook", "-i", str(self.inventory),
                           str(ansible.collection / playbook), "-e", f"@{self.vars_file}", *args)


def settings_for(fleet: nspawn.Fleet, **extra) -> dict:
    return {
        "coral_hosts": "all",
        "coral_colony_data_dir": "/var/lib/coral/colony",
        "coral_venv": "/opt/coral/venv",
        "coral_colony_host": COLONY,
        "coral_colony_listen": f"127.0.0.1:{nspawn.free_port()}",
        "coral_lib_pip_spec": nspawn.coral_wheel(fleet.wheels),
        "coral_pip_extra_args": ["--no-index", "--find-links", nspawn.WHEELS_MOUNT],
        "coral_agent_poll_interval": "2s",
        **extra,
    }


def recaps(stdout: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host."""
    rows = {}
    for line in stdout.splitlines():
        parts = line.split(":", 1)
        if len(parts) == 2 and " ok=" in parts[1] and not line.startswith(" "):
            rows[parts[0].strip()] = {k: int(v) for k, v in
                                      (kv.split("=") for kv in parts[1].split() if "=" in kv)}
    return rows


def deploy(ansible: Ansible, fleet: nspawn.Fleet, directory: pathlib.Path,  # noqa: F811
           **extra) -> Deployed:
    inventory = fleet.inventory({"coral_colony": [COLONY], "coral_agents": list(AGENTS)})
    settings = settings_for(fleet, **extra)
    vars_file = directory / "vars.yml"
    vars_file.write_text(yaml.safe_dump(settings))
    deployed = Deployed(fleet=fleet, inventory=inventory, vars_file=vars_file,
                        settings=settings, first_run=None)  # type: ignore[arg-type]
    deployed.first_run = deployed.playbook(ansible)
    return deployed


@pytest.fixture(scope="session")
def fleet(tmp_path_factory):
    reason = _can_boot()
    if reason:
        pytest.skip(reason)
    fleet = nspawn.start_fleet(tmp_path_factory.mktemp("fleet"), [COLONY, *AGENTS])
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="session")
def deployed(ansible, fleet, tmp_path_factory):  # noqa: F811
    """deploy-coral.yml over SSH: the colony on colony-1, an agent on every host."""
    return deploy(ansible, fleet, tmp_path_factory.mktemp("deploy"))
