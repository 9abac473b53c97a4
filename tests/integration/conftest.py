"""Fixtures: real agent processes on loopback TLS (`colony` is in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.support import coral_procs


@pytest.fixture
def fleet(tmp_path, colony):
    """Two host agents with explicit services, registered and linked."""
    agents = [
        coral_procs.Agent(tmp_path / "agents", colony, agent_id="web-1", services=[
            {"name": "api", "port": 18080, "health": {"endpoint": "/health"}, "type": "http",
             "labels": {"tier": "front", "env": "test"}}]),
        coral_procs.Agent(tmp_path / "agents", colony, agent_id="db-1", services=[
            {"name": "db", "port": 15432, "type": "postgres", "labels": {"tier": "data"}}]),
    ]
    for agent in agents:
        agent.start()
    coral_procs.wait_registered(colony, [a.agent_id for a in agents])
    yield agents
    for agent in agents:
        agent.stop()
