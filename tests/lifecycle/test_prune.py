"""Issue 16: `coral agents prune` -- an admin verb (coral_lib/colony/verbs.py) that removes
agents without a link, unseen longer than --older-than, with an `agent` audit record each.
The colony runs with the default agentExpiry (15 min) so nothing expires by itself."""

from __future__ import annotations

import json
import signal

import pytest

from tests.security.conftest import PolicyColony
from tests.support import coral_procs
from tests.support.coral_procs import wait_for

POLICY = """
rules:
  - {name: admins-all, groups: [admins], verbs: ["*"]}
  - {name: readers, identities: [rita], verbs: [read, exec]}
"""


@pytest.fixture
def policy_colony(tmp_path):
    (tmp_path / "policy.yaml").write_text(POLICY)
    colony = PolicyColony(tmp_path / "colony", args=("--policy", str(tmp_path / "policy.yaml")))
    colony.add_token("rita")
    colony.start()
    yield colony
    colony.stop()


def test_coral_agents_prune_removes_stale_agents_and_only_for_admins(tmp_path, policy_colony):
    colony = policy_colony
    dead = coral_procs.Agent(tmp_path / "agents", colony, agent_id="vm-dead", services=[
        {"name": "old", "port": 18095}]).start()
    live = coral_procs.Agent(tmp_path / "agents", colony, agent_id="vm-live").start()
    try:
        coral_procs.wait_registered(colony, ["vm-dead", "vm-live"])
        dead.proc.send_signal(signal.SIGKILL)
        dead.proc.wait(10)
        wait_for(lambda: not _connected(colony, "vm-dead"), timeout=20, what="link dropped")
        refused = coral_procs.coral("agents", "prune", "--older-than", "1s",
                                    env=colony.env_for("rita"))
        assert refused.returncode != 0 and "admin" in refused.stderr, refused.stderr
        wait_for(lambda: _prune(colony, "--dry-run") == {"would_prune": ["vm-dead"]},
                 timeout=20, what="vm-dead unseen for a second")
        assert _prune(colony) == {"pruned": ["vm-dead"]}
        with colony.client() as c:
            assert {a["agent_id"] for a in c.list_agents()} == {"vm-live"}
            assert c.list_services(name="old") == []
            (record,) = [r for r in c.audit(kind="agent") if r["event"] == "pruned"]
        assert (record["agent_id"], record["by"]) == ("vm-dead", "admin")
        assert _prune(colony) == {"pruned": []}  # the connected agent is never pruned
    finally:
        dead.stop()
        live.stop()


def _prune(colony, *flags: str) -> dict:
    run = coral_procs.coral("agents", "prune", "--older-than", "1s", *flags,
                            env=colony.operator_env)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _connected(colony, agent_id: str) -> bool:
    with colony.client() as c:
        return any(a["connected"] for a in c.list_agents() if a["agent_id"] == agent_id)
