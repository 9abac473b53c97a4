"""Issue 13, Health: an agent's liveness and readiness on its --health-listen port.

Acceptance: "agent liveness/readiness (link up, discovery fresh) on a local port".
"""

from __future__ import annotations

import pytest

from coral_lib.agent import observe
from tests.metrics import conftest
from tests.support import coral_procs, scrape


def test_agent_readyz_follows_the_link_to_its_colony(tmp_path):
    watched = conftest.start_watched(tmp_path)
    try:
        coral_procs.wait_for(lambda: scrape.get(watched.agent_health, "/healthz")[0] == 200,
                             what="agent health listener")
        coral_procs.wait_registered(watched.colony, [watched.agent.agent_id])
        coral_procs.wait_for(lambda: scrape.get(watched.agent_health, "/readyz")[0] == 200,
                             what="ready once registered, linked and discovered")
        watched.colony.stop()
        coral_procs.wait_for(lambda: scrape.get(watched.agent_health, "/readyz")[0] == 503,
                             what="unready while the colony is down")
        status, body = scrape.get(watched.agent_health, "/readyz")
        assert "the operation link to the colony is down" in body
        assert scrape.get(watched.agent_health, "/healthz") == (200, "ok\n"), \
            "a colony outage never makes the agent unlive (a restart would not help)"
        watched.colony.start()
        coral_procs.wait_for(lambda: scrape.get(watched.agent_health, "/readyz")[0] == 200,
                             timeout=40, what="ready again after the colony is back")
    finally:
        watched.agent.stop()
        watched.colony.stop()


def test_agent_readyz_is_unready_until_it_joins(tmp_path):
    """A join token the colony refuses: the agent runs, and says why it is not ready."""
    port = coral_procs.free_port()
    colony = coral_procs.Colony(tmp_path / "colony").start()
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="late-1",
                              join_token="coral-join-not-issued",
                              args=("--health-listen", f"127.0.0.1:{port}")).start()
    try:
        coral_procs.wait_for(lambda: scrape.get(port, "/readyz")[0] == 503,
                             what="agent health listener")
        status, body = scrape.get(port, "/readyz")
        assert "not registered with the colony" in body
        assert "no discovery cycle has completed yet" in body
        assert scrape.get(port, "/healthz")[0] == 200
        assert scrape.get(port, "/metrics")[0] == 404, "metrics are on --metrics-listen only"
    finally:
        agent.stop()
        colony.stop()


@pytest.mark.parametrize(("facts", "expected"), [
    ({"registered": True, "link_up": True, "discovery_age": 5.0}, []),
    ({"registered": True, "link_up": True, "discovery_age": 61.0},
     ["discovery is stale: the last cycle completed 61s ago (fresh for 60s)"]),
    ({"registered": True, "link_up": False, "discovery_age": 1.0},
     ["the operation link to the colony is down"]),
    ({"registered": False, "link_up": False, "discovery_age": None},
     ["not registered with the colony", "the operation link to the colony is down",
      "no discovery cycle has completed yet"]),
])
def test_agent_readiness_decision(facts, expected):
    assert observe.problems(fresh_for=60.0, **facts) == expected


def test_agent_listen_flags_are_checked(tmp_path):
    colony = coral_procs.Colony(tmp_path / "colony")
    colony.data_dir.mkdir(parents=True)
    (colony.data_dir / "colony.id").write_text("c-1\n")
    (colony.data_dir / "ca.crt").write_text("read only when the agent dials\n")
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="a-1", join_token="x")
    run = coral_procs.coral("agent", "start", "--config", str(agent.config_path),
                            "--state-dir", str(agent.state_dir), "--socket",
                            str(agent.socket_path), "--health-listen", "localhost")
    assert run.returncode == 2
    assert "--health-listen 'localhost': expected HOST:PORT" in run.stderr
