"""Fixtures: a real colony started with a policy file and token identities, real agents."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from tests.support import coral_procs

POLICY = """
groups:
  sre: [alice, bob]
approvalTTL: 8s
rules:
  - name: admins-all
    groups: [admins]
    verbs: ["*"]
  - name: sre-read
    groups: [sre]
    verbs: [read, approve]
  - name: sre-staging
    groups: [sre]
    verbs: [exec, shell, tap, trace]
    scope: {env: [staging]}
  - name: sre-production
    groups: [sre]
    verbs: [exec]
    scope: {env: [production]}
    requireApproval: true
  - name: no-carol
    effect: deny
    identities: [carol]
    verbs: [exec]
  - name: carol-exec
    identities: [carol]
    verbs: [read, exec]
"""


class PolicyColony(coral_procs.Colony):
    """A colony process started with extra `coral colony start` arguments."""

    def __init__(self, data_dir: pathlib.Path, *, args: tuple[str, ...] = ()) -> None:
        super().__init__(data_dir)
        self.args = args
        self.tokens: dict[str, str] = {}

    def add_token(self, identity: str, *groups: str) -> str:
        flags = [f"--group={g}" for g in groups]
        run = coral_procs.coral("colony", "token", "add", "--data-dir", str(self.data_dir),
                                "--identity", identity, *flags, check=True)
        self.tokens[identity] = run.stdout.strip()
        return self.tokens[identity]

    def start(self) -> PolicyColony:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*coral_procs.CORAL, "colony", "start", "--data-dir", str(self.data_dir),
             "--listen", self.address, *self.args], stdout=log, stderr=subprocess.STDOUT)
        coral_procs.wait_for(self._ready, what=f"colony on {self.address}")
        return self

    def env_for(self, identity: str) -> dict[str, str]:
        env = dict(self.operator_env)
        env.pop("CORAL_TOKEN_FILE")
        env["CORAL_TOKEN"] = self.tokens[identity]
        return env

    def client_for(self, identity: str):
        from coral_lib import client
        return client.connect(self.address, ca_file=str(self.data_dir / "ca.crt"),
                              token=self.tokens[identity])


def start_fleet(tmp_path: pathlib.Path, colony: coral_procs.Colony) -> list[coral_procs.Agent]:
    """Two host agents: service `api` (env=staging) and `pay` (env=production)."""
    agents = [
        coral_procs.Agent(tmp_path / "agents", colony, agent_id="stage-1", services=[
            {"name": "api", "port": 18080, "labels": {"env": "staging"}}]),
        coral_procs.Agent(tmp_path / "agents", colony, agent_id="prod-1", services=[
            {"name": "pay", "port": 18081, "labels": {"env": "production"}}]),
    ]
    for agent in agents:
        agent.start()
    coral_procs.wait_registered(colony, [a.agent_id for a in agents])
    return agents


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """Colony with the POLICY above; tokens for alice and bob (sre), carol, dave (none)."""
    tmp = tmp_path_factory.mktemp("secured")
    policy_file = tmp / "policy.yaml"
    policy_file.write_text(POLICY)
    mtls_port = coral_procs.free_port()
    colony = PolicyColony(tmp / "colony", args=("--policy", str(policy_file), "--mtls-listen",
                                                 f"127.0.0.1:{mtls_port}"))
    colony.mtls_address = f"127.0.0.1:{mtls_port}"
    for identity, groups in (("alice", ["sre"]), ("bob", ["sre"]), ("carol", []),
                             ("dave", [])):
        colony.add_token(identity, *groups)
    colony.start()
    agents = start_fleet(tmp, colony)
    yield colony
    for agent in agents:
        agent.stop()
    colony.stop()
