"""Watch chaos against the API server fixture (issue 7 resilience): random watch
disconnects, forced 410s (with compaction), 500s and slow responses while 1,000 pods are
created, relabelled and deleted on two nodes; the colony registry converges to the truth
(the pods the API server holds), each service exactly once.
"""

from __future__ import annotations

import random
import threading
import time

from tests.resilience.conftest import churn_step, explain_difference, registry_pods, truth
from tests.support import coral_procs

NODES = ("node-a", "node-b")
PODS = 1000


def chaos(kubeapi, rng: random.Random, stop: threading.Event, fired: dict) -> None:
    """Every ~0.4 s one fault: disconnect, 410, 500s on pod requests, or slow pod requests."""
    while not stop.wait(rng.uniform(0.2, 0.6)):
        kind = rng.choice(["drop", "gone", "500", "slow"])
        if kind == "drop":
            kubeapi.faults.drop_watches()
        elif kind == "gone":
            kubeapi.faults.force_gone(1)
            kubeapi.compact()
            kubeapi.faults.drop_watches()
        elif kind == "500":
            kubeapi.faults.fail(rng.randint(1, 4), code=500, path=r"/pods")
        else:
            kubeapi.faults.delay(rng.uniform(0.2, 1.5), path=r"/pods", count=rng.randint(1, 3))
        fired[kind] = fired.get(kind, 0) + 1


def test_watch_chaos_1000_pod_churn_registry_converges_to_truth(kubeapi, colony, node_agents):
    agents = [node_agents(n) for n in NODES]
    coral_procs.wait_registered(colony, [a.agent_id for a in agents], timeout=30)
    rng, stop, fired = random.Random(2024), threading.Event(), {}
    chaos_thread = threading.Thread(target=chaos, args=(kubeapi, random.Random(99), stop, fired),
                                    daemon=True)
    chaos_thread.start()
    try:
        for i in range(PODS):
            churn_step(kubeapi, i, nodes=NODES, rng=rng)
            time.sleep(0.015)  # ~20 s of churn, so dozens of faults land mid-stream
    finally:
        stop.set()
        chaos_thread.join(5)
    kubeapi.faults.clear()
    expected = truth(kubeapi)
    assert len(expected) > PODS // 2

    def converged() -> bool:
        actual = registry_pods(colony)
        return len(actual) == len(set(actual)) and set(actual) == expected
    try:
        coral_procs.wait_for(converged, timeout=120, interval=1.0,
                             what="registry converges to the truth")
    except TimeoutError:
        raise AssertionError(f"{explain_difference(expected, registry_pods(colony))}; "
                             f"faults {fired}; {agents[0].log()[-1500:]}") from None
    assert set(fired) == {"drop", "gone", "500", "slow"}, f"not every fault fired: {fired}"
    assert kubeapi.faults.injected > 0
    assert all(a.proc.poll() is None for a in agents), "an agent died under chaos"
