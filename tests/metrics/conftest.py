"""Fixtures: a real colony and host agent, each serving /metrics on its own port."""

from __future__ import annotations

import dataclasses

import pytest

from tests.support import coral_procs, scrape


@dataclasses.dataclass
class Watched:
    colony: coral_procs.Colony
    agent: coral_procs.Agent
    colony_metrics: int
    agent_metrics: int
    agent_health: int

    def exec(self, *argv: str, token: str | None = None):
        env = dict(self.colony.operator_env)
        if token is not None:
            token_file = self.colony.data_dir.parent / "other.token"
            token_file.write_text(token)
            env["CORAL_TOKEN_FILE"] = str(token_file)
        return coral_procs.coral("exec", "--agent", self.agent.agent_id, "--", *argv, env=env)


def start_watched(tmp_path, *, colony_args: tuple[str, ...] = (),
                  agent_id: str = "host-1") -> Watched:
    ports = [coral_procs.free_port() for _ in range(3)]
    colony = coral_procs.Colony(
        tmp_path / "colony", args=("--metrics-listen", f"127.0.0.1:{ports[0]}", *colony_args)
    ).start()
    agent = coral_procs.Agent(
        tmp_path / "agents", colony, agent_id=agent_id,
        services=[{"name": "billing", "port": coral_procs.free_port()}],
        args=("--metrics-listen", f"127.0.0.1:{ports[1]}",
              "--health-listen", f"127.0.0.1:{ports[2]}")).start()
    return Watched(colony, agent, *ports)


@pytest.fixture
def watched(tmp_path):
    """A colony and one host agent, registered and linked, both serving /metrics."""
    running = start_watched(tmp_path)
    try:
        coral_procs.wait_registered(running.colony, [running.agent.agent_id])
        coral_procs.wait_for(lambda: scrape.get(running.agent_health, "/readyz")[0] == 200,
                             what="agent /readyz 200")
        yield running
    finally:
        running.agent.stop()
        running.colony.stop()
