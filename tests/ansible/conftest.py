"""Fixtures for the coral.mesh collection tests: the collection built and installed into
a temp collections path (ansible-galaxy collection build + install, as users get it), real
ansible-playbook runs on localhost, and a host-mode deployment in temp directories."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import pytest
import yaml

from coral_lib import supervise

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def recap(stdout: str) -> dict[str, int]:
    """The PLAY RECAP counters of the (single) host, e.g. {'ok': 40, 'changed': 0, ...}."""
    lines = [line for line in stdout.splitlines() if re.match(r"^\S+\s+: ok=", line)]
    assert lines, f"no PLAY RECAP in output:\n{stdout[-3000:]}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1])}


@dataclasses.dataclass
class Ansible:
    env: dict[str, str]
    collection: pathlib.Path  # the installed coral.mesh
    inventory: pathlib.Path
    workdir: pathlib.Path

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, cwd=self.workdir, capture_output=True,
                              text=True, timeout=timeout)

    def playbook(self, playbook: str | pathlib.Path, *args: str,
                 timeout: float = 600) -> subprocess.CompletedProcess:
        path = pathlib.Path(playbook)
        if not path.is_absolute():
            path = self.collection / path
        return self.run(str(BIN / "ansible-playbook"), "-i", str(self.inventory), str(path),
                        *args, timeout=timeout)


@pytest.fixture(scope="session")
def ansible(tmp_path_factory) -> Ansible:
    """coral.mesh built from this checkout and installed into a temp collections path."""
    base = tmp_path_factory.mktemp("ansible")
    out = subprocess.run(["bash", str(ROOT / "tools/install_collection.sh"), str(base / "coll")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    collection = pathlib.Path(out.stdout.strip().splitlines()[-1])
    cfg = base / "ansible.cfg"
    cfg.write_text("[defaults]\nretry_files_enabled = false\ninterpreter_python = auto_silent\n"
                   "[connection]\npipelining = true\n")
    inventory = base / "inventory"
    # implicit-localhost behaviour: modules run with the controller's Python unless a task
    # says otherwise (inventory vars rank below task vars, unlike -e)
    inventory.write_text('localhost ansible_connection=local '
                         'ansible_python_interpreter="{{ ansible_playbook_python }}"\n')
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_COLLECTIONS_PATH": str(base / "coll"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(base / "tmp"),
           "ANSIBLE_HOME": str(base / "home")}
    for key in ("CORAL_COLONY_ADDRESS", "CORAL_CA_FILE", "CORAL_TOKEN", "CORAL_TOKEN_FILE",
                "CORAL_COLONY_DATA_DIR"):
        env.pop(key, None)
    return Ansible(env=env, collection=collection, inventory=inventory, workdir=base)


@pytest.fixture(scope="session")
def target_venv(tmp_path_factory) -> pathlib.Path:
    """One virtualenv for every deployment of the session (the first role run installs
    coral-lib into it; later runs find the same source fingerprint and skip pip)."""
    return tmp_path_factory.mktemp("target") / "venv"


@dataclasses.dataclass
class Deployment:
    root: pathlib.Path
    vars_file: pathlib.Path
    settings: dict
    first_run: subprocess.CompletedProcess | None = None
    removed: bool = False  # a test ran state=absent already

    @property
    def address(self) -> str:
        return self.settings["coral_colony_listen"]

    @property
    def data_dir(self) -> pathlib.Path:
        return pathlib.Path(self.settings["coral_colony_data_dir"])

    def pid_file(self, unit: str) -> str:
        return f"{self.settings['coral_run_dir']}/{unit}.pid"

    def cli_env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "CORAL_COLONY_ADDRESS": self.address,
                "CORAL_CA_FILE": str(self.data_dir / "ca.crt"),
                "CORAL_TOKEN_FILE": str(self.data_dir / "admin.token")}

    def coral(self, ansible: Ansible, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "coral_lib.cli", *args],
                              env=self.cli_env(ansible.env), capture_output=True, text=True,
                              timeout=60)

    def stop_everything(self) -> None:
        for unit in ("coral-agent", "coral-colony"):
            supervise.stop(self.pid_file(unit))


def make_deployment(root: pathlib.Path, venv: pathlib.Path, **extra) -> Deployment:
    settings = {
        "coral_venv": str(venv),
        "coral_colony_listen": f"127.0.0.1:{free_port()}",
        "coral_colony_data_dir": str(root / "colony"),
        "coral_colony_config_dir": str(root / "etc"),
        "coral_agent_config_dir": str(root / "etc"),
        "coral_agent_state_dir": str(root / "agent"),
        "coral_run_dir": str(root / "run"),
        "coral_log_dir": str(root / "log"),
        "coral_agent_id": "host-agent",
        "coral_remove_venv": False,  # shortcut: one session venv serves every deployment
        "coral_agent_poll_interval": "1s",
        "coral_agent_services": [
            {"name": "api", "port": 18080, "health": {"endpoint": "/health"}, "type": "http",
             "labels": {"env": "test"}},
        ],
        **extra,
    }
    root.mkdir(parents=True, exist_ok=True)
    vars_file = root / "vars.yml"
    vars_file.write_text(yaml.safe_dump(settings))
    return Deployment(root=root, vars_file=vars_file, settings=settings)


@pytest.fixture(scope="module")
def deployed(ansible, target_venv, tmp_path_factory):
    """deploy-coral.yml (host mode, localhost) run once for the module; removed after."""
    deployment = make_deployment(tmp_path_factory.mktemp("deploy"), target_venv)
    deployment.first_run = ansible.playbook("playbooks/deploy-coral.yml",
                                            "-e", f"@{deployment.vars_file}")
    try:
        yield deployment
    finally:
        if not deployment.removed:
            ansible.playbook("playbooks/deploy-coral.yml", "-e", f"@{deployment.vars_file}",
                             "-e", "coral_state=absent")
        deployment.stop_everything()  # in case the removal itself failed


def write_results_play(path: pathlib.Path, tasks: list[dict], *, deployment: Deployment,
                       out: pathlib.Path) -> pathlib.Path:
    """A playbook running `tasks` against the deployment's colony with the target venv's
    Python; every registered result is written to `out` as JSON."""
    names = [t["register"] for t in tasks if "register" in t]
    play = [{
        "hosts": "localhost", "gather_facts": False,
        "vars": {"ansible_python_interpreter": f"{deployment.settings['coral_venv']}/bin/python"},
        "module_defaults": {"group/coral.mesh.coral": {
            "colony_address": deployment.address,
            "colony_ca_file": str(deployment.data_dir / "ca.crt"),
            "colony_token_file": str(deployment.data_dir / "admin.token")}},
        "tasks": [*tasks, {
            "name": "save results",
            "ansible.builtin.copy": {
                "dest": str(out),
                "content": "{{ {" + ", ".join(f"'{n}': {n}" for n in names) + "} | to_json }}"},
        }],
    }]
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    return path


def load(path: pathlib.Path) -> dict:
    return json.loads(path.read_text())
