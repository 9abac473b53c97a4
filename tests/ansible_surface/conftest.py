"""Issue 16 "Ansible surface" fixtures: a real colony with an approval policy, two real host
agents (one in a `requireApproval` scope), and ansible-playbook / ansible-inventory run with
this checkout as the coral.mesh collection. No pods: what is tested here is the Ansible side
(modules, connection plugin, inventory, playbooks), which pods reach the same way."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys
import threading

import pytest
import yaml

from tests.ansible_fleet.conftest import _ansible_env, _plain
from tests.security.conftest import PolicyColony
from tests.support import coral_procs

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent

# `ops` runs the playbooks: staging freely, production only once `approver` approved;
# every exec of `gated` (whole hosts, as the connection plugin targets them) needs approval.
POLICY = """
approvalTTL: 5m
approvalLimits: {perIdentity: "200/m, burst=200", pendingPerIdentity: 20}
rules:
  - name: admins-all
    groups: [admins]
    verbs: ["*"]
  - name: ops-read
    identities: [ops]
    verbs: [read]
  - name: ops-staging
    identities: [ops]
    verbs: [exec]
    scope: {env: [staging]}
  - name: ops-production
    identities: [ops]
    verbs: [exec]
    scope: {env: [production]}
    requireApproval: true
  - name: gated-everything
    identities: [gated]
    verbs: [exec]
    requireApproval: true
  - name: approver
    identities: [approver]
    verbs: [read, approve]
"""


@dataclasses.dataclass
class Surface:
    colony: PolicyColony
    work: pathlib.Path
    env: dict[str, str]

    def as_ops(self) -> dict[str, str]:
        return self.as_identity("ops")

    def as_identity(self, identity: str) -> dict[str, str]:
        return {"CORAL_TOKEN": self.colony.tokens[identity]}

    def run(self, *argv: str, env: dict[str, str | None] | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess:
        """argv with this surface's environment; `env` adds to it (None removes)."""
        merged = {k: v for k, v in {**self.env, **(env or {})}.items() if v is not None}
        return subprocess.run(list(argv), env=merged, cwd=self.work, capture_output=True,
                              text=True, timeout=timeout)

    def write(self, name: str, data) -> pathlib.Path:
        path = self.work / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def playbook(self, plays: list[dict] | pathlib.Path | str, *, name: str = "play",
                 inventory: pathlib.Path | str | None = None,
                 env: dict[str, str] | None = None, args: tuple[str, ...] = ()
                 ) -> subprocess.CompletedProcess:
        target = plays if isinstance(plays, (str, pathlib.Path)) else self.write(
            f"{name}.yml", plays)
        inv = ("-i", str(inventory)) if inventory else ("-i", "localhost,")
        return self.run(str(BIN / "ansible-playbook"), *inv, str(target), *args, env=env)

    def inventory(self, source: pathlib.Path, env: dict[str, str] | None = None) -> dict:
        out = self.run(str(BIN / "ansible-inventory"), "-i", str(source), "--list", env=env)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout, object_hook=_plain)

    def saved(self, name: str, host: str = "localhost") -> dict:
        return json.loads((self.work / f"{name}-{host}.json").read_text())

    def audit(self, **filters) -> list[dict]:
        with self.colony.client() as c:
            return list(c.audit_records(**filters))


def local_play(tasks: list[dict], *, save: list[str], prefix: pathlib.Path,
               check: bool = False) -> list[dict]:
    """One play on localhost (local connection, the test's Python: it has coral_lib) whose
    registered results are written to <prefix>-localhost.json."""
    return [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {"ansible_python_interpreter": sys.executable},
             "tasks": [*tasks, save_task(save, prefix)]}]


def save_task(names: list[str], prefix: pathlib.Path) -> dict:
    return {"name": "save results", "delegate_to": "localhost",
            "vars": {"ansible_connection": "local",
                     "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
            "check_mode": False,
            "ansible.builtin.copy": {
                "dest": f"{prefix}-{{{{ inventory_hostname }}}}.json",
                "content": "{{ {" + ", ".join(f"'{n}': {n} | default(None)" for n in names)
                + "} | to_json }}"}}


class Approver:
    """Another identity approving every pending request of `ops` while it runs (a real
    second operator, polling the colony as `coral approvals` would)."""

    def __init__(self, colony: PolicyColony) -> None:
        self.colony, self.approved = colony, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Approver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        with self.colony.client_for("approver") as c:
            while not self._stop.wait(0.2):
                for record in c.approvals():
                    if record["state"] == "pending":
                        c.approve(record["approval_id"])
                        self.approved.append(record["approval_id"])


@pytest.fixture(scope="package")
def surface(tmp_path_factory):
    work = tmp_path_factory.mktemp("surface")
    (work / "policy.yaml").write_text(POLICY)
    mtls = f"127.0.0.1:{coral_procs.free_port()}"
    colony = PolicyColony(work / "colony", args=("--policy", str(work / "policy.yaml"),
                                                  "--mtls-listen", mtls))
    colony.mtls_address = mtls
    colony.add_token("ops")
    colony.add_token("approver")
    colony.add_token("gated")
    colony.start()
    agents = [
        coral_procs.Agent(work / "agents", colony, agent_id="stage-1", services=[
            {"name": "api", "port": 18180, "labels": {"env": "staging"}}]),
        coral_procs.Agent(work / "agents", colony, agent_id="prod-1", services=[
            {"name": "pay", "port": 18181, "labels": {"env": "production"}}]),
        # registered before issue 16 by the role's old default id (inventory_hostname)
        coral_procs.Agent(work / "agents", colony, agent_id="localhost"),
    ]
    try:
        for agent in agents:
            agent.start()
        coral_procs.wait_registered(colony, [a.agent_id for a in agents])
        yield Surface(colony=colony, work=work, env=_ansible_env(work, colony))
    finally:
        for agent in agents:
            agent.stop()
        colony.stop()
