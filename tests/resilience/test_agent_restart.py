"""Agent killed (SIGKILL) and restarted during churn (issue 7 resilience): no duplicate or
ghost services once things settle.

1. DaemonSet agents (`coral agent node`, two nodes) while 400 pods are created, relabelled
   and deleted in the API server fixture; each agent is SIGKILLed and restarted twice
   mid-churn. The registry must equal the pods the API server holds, each exactly once;
   separately, no service may have been added twice (a restart must not drop and re-add).
2. Host agents (`coral agent start`) whose explicit services change by config rewrite
   between SIGKILL and restart: each agent's explicit services equal its last config.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from coral_lib.colony import discovery_record
from tests.daemonset.conftest import added_counts
from tests.resilience.conftest import (
    churn_step,
    explain_difference,
    registry_pods,
    truth,
)
from tests.support import coral_procs

NODES = ("node-a", "node-b")
FLAPS: dict = {}  # what the SIGKILL churn test saw, for the flap test that follows it
PODS = 400


def test_daemonset_agent_sigkill_restart_during_churn_no_duplicate_or_ghost_services(
        kubeapi, colony, node_agents):
    agents = {n: node_agents(n) for n in NODES}
    coral_procs.wait_registered(colony, [f"node-{n}" for n in NODES], timeout=30)
    rng, done = random.Random(7), threading.Event()

    def churn() -> None:
        try:
            for i in range(PODS):
                churn_step(kubeapi, i, nodes=NODES, rng=rng)
                time.sleep(0.02)
        finally:
            done.set()

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    kills = 0
    for round_ in range(4):
        time.sleep(1.5)
        node = NODES[round_ % len(NODES)]
        agents[node].proc.kill()  # SIGKILL: no goodbye, no state flush
        agents[node].proc.wait(10)
        kills += 1
        time.sleep(0.3)
        agents[node] = node_agents(node)
    done.wait(60)
    worker.join(5)
    expected = truth(kubeapi)

    def settled() -> bool:
        actual = registry_pods(colony)
        return len(actual) == len(set(actual)) and set(actual) == expected
    try:
        coral_procs.wait_for(settled, timeout=60, interval=1.0, what="registry equals truth")
    except TimeoutError:
        raise AssertionError(explain_difference(expected, registry_pods(colony))
                             + agents[NODES[0]].log()[-1500:]) from None
    assert kills == 4
    twice = {k: v for k, v in added_counts(colony).items() if v > 1}
    FLAPS["twice"] = twice
    FLAPS["history"] = _history(colony, next(iter(twice))[1]) if twice else []


def test_daemonset_agent_restart_does_not_drop_and_readd_services():
    """After a SIGKILL the restarted agent must not make the colony remove services it still
    has and add them back (consumers would see them vanish). Reads what the test above saw."""
    if "twice" not in FLAPS:
        pytest.skip("the SIGKILL churn test did not get this far")
    twice = FLAPS["twice"]
    assert not twice, (f"a restart dropped and re-added services: {list(twice.items())[:5]}; "
                       f"audit history of the first: {FLAPS['history']}")


def _history(colony, key: str) -> list[tuple]:
    """The colony audit's discovery events for one service key, in order."""
    pod_name = key.split("/")[1]
    with colony.client() as c:
        rows = c.audit(kind="discovery", limit=100_000)
    return [(r["id"], r["agent_id"], event, key.rpartition("/")[2].rpartition(":")[0])
            for r in rows for event, key in discovery_record.events(r)
            if key.split("/")[1] == pod_name]


def _explicit(colony, agent_id: str) -> list[tuple]:
    with colony.client() as c:
        return [(s["component_name"], s["port"]) for s in c.list_services(agent=agent_id)
                if s["provenance"] == "explicit"]


def test_host_agent_sigkill_restart_with_config_churn_no_duplicate_or_ghost_services(
        tmp_path, colony):
    rng = random.Random(11)
    ids = ["host-a", "host-b"]
    configs = {a: [{"name": f"{a}-svc-{i}", "port": 9000 + i} for i in range(3)] for a in ids}
    agents = {a: coral_procs.Agent(tmp_path / "agents", colony, agent_id=a,
                                   services=configs[a]).start() for a in ids}
    try:
        coral_procs.wait_registered(colony, ids)
        for round_ in range(6):
            agent_id = ids[round_ % 2]
            agents[agent_id].proc.kill()
            agents[agent_id].proc.wait(10)
            picked = rng.sample(range(20), rng.randrange(1, 6))
            configs[agent_id] = [{"name": f"{agent_id}-svc-{i}", "port": 9000 + i}
                                 for i in picked]
            agents[agent_id] = coral_procs.Agent(tmp_path / "agents", colony, agent_id=agent_id,
                                                 services=configs[agent_id]).start()
            time.sleep(rng.uniform(0.2, 1.5))  # sometimes killed again before it registered
        for agent_id in ids:
            want = sorted((s["name"], s["port"]) for s in configs[agent_id])
            coral_procs.wait_for(lambda a=agent_id, w=want: sorted(_explicit(colony, a)) == w,
                                 timeout=30, what=f"{agent_id} explicit services equal config")
            got = _explicit(colony, agent_id)
            assert len(got) == len(set(got)), f"duplicates for {agent_id}: {got}"
    finally:
        for agent in agents.values():
            agent.stop()
