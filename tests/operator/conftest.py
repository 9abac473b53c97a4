"""A real colony with one host agent (web-1, service api) for the operator tests."""

from __future__ import annotations

import pytest

from tests.support import coral_procs


@pytest.fixture
def host_fleet(tmp_path):
    colony = coral_procs.Colony(tmp_path / "colony").start()
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="web-1", services=[
        {"name": "api", "port": coral_procs.free_port()}]).start()
    try:
        coral_procs.wait_registered(colony, ["web-1"])
        yield colony
    finally:
        agent.stop()
        colony.stop()
