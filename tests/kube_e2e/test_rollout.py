"""Issue 14 §4.3 "playbooks/rollout-coral.yml: the canary gate passes on a healthy rollout
and rolls back when the new image's pods fail readiness — seen through real pod status":
deploy-coral.yml and rollout-coral.yml run as a user runs them against the fixture, the
DaemonSet's pods run from the image on the pod runner, the role's rollout wait reads the
status the live controller computes from those pods, and the gate asks the colony which
node agents (in those pods) are connected."""

from __future__ import annotations

import subprocess
import threading

from tests.ansible_k8s.conftest import run_playbook
from tests.kube_e2e.conftest import deploy_daemonset_with_ansible
from tests.support import containerd, coral_procs
from tests.support.coral_procs import wait_for
from tests.support.kubecluster import NODES, SYSTEM

GOOD, NEXT, BROKEN = "coral/agent:0.1.0", "coral/agent:0.2.0", "coral/agent:9.9.9-broken"


def ds_image(server) -> str:
    ds = server.store.get("daemonsets", "coral-agent", namespace=SYSTEM)
    return ds["spec"]["template"]["spec"]["containers"][0]["image"]


def _pod_states_during(kube, action) -> dict:
    """Run action() while recording (image, waiting/terminated reason) of the agent pods'
    containers as the pod runner reports them."""
    states: set[tuple[str, str]] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            for pod in kube.agent_pods().values():
                for status in (pod.get("status") or {}).get("containerStatuses") or []:
                    for key in ("waiting", "terminated"):
                        reason = (status.get("state") or {}).get(key, {}).get("reason")
                        if reason:
                            states.add((pod["spec"]["containers"][0]["image"], reason))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        result = action()
    finally:
        stop.set()
        thread.join()
    return {"result": result, "states": sorted(states)}


def connected(colony) -> set[str]:
    with colony.client() as c:
        return {a["agent_id"] for a in c.list_agents() if a.get("connected")}


def test_e2e_rollout_canary_gate_passes_healthy_and_rolls_back_unready(kube, cluster_colony,
                                                                        tmp_path):
    colony = cluster_colony
    server = kube.server
    inventory, ev = deploy_daemonset_with_ansible(kube, colony, tmp_path)
    wanted = {f"node-{n}" for n in NODES}
    wait_for(lambda: connected(colony) >= wanted
             and server.store.get("daemonsets", "coral-agent", namespace=SYSTEM)["status"]
             .get("updatedNumberScheduled") == 2, timeout=120, what="v1 agents connected")

    # Healthy: the next version (the same image under a new tag) rolls out and passes.
    subprocess.run(["ctr", "--address", kube.runtime.socket, "-n", "k8s.io", "images", "tag",
                    "--force", f"docker.io/{GOOD}", f"docker.io/{NEXT}"], check=True,
                   capture_output=True)
    gate = {"coral_rollout_gate_timeout": 60, "coral_rollout_gate_delay": 2}
    run = run_playbook("rollout-coral.yml", inventory=str(inventory),
                       extra_vars={**ev, **gate, "coral_daemonset_image": NEXT}, timeout=300)
    assert run.rc == 0, run.explain()
    assert ds_image(server) == NEXT
    pods = kube.agent_pods()
    assert {p["spec"]["containers"][0]["image"] for p in pods.values()} == {NEXT}
    assert all(p["status"]["containerStatuses"][0]["ready"] for p in pods.values())

    # Unhealthy: a broken image built locally (busybox under the agent's name: its
    # `coral agent node` command does not exist, so every container start fails and the
    # pods never become ready): the role's rollout wait sees the real pod status, the
    # cluster fails and is rolled back.
    subprocess.run(["ctr", "--address", kube.runtime.socket, "-n", "k8s.io", "images", "tag",
                    "--force", containerd.BUSYBOX_IMAGE, f"docker.io/{BROKEN}"], check=True,
                   capture_output=True)
    seen = _pod_states_during(kube, lambda: run_playbook(
        "rollout-coral.yml", inventory=str(inventory),
        extra_vars={**ev, **gate, "coral_daemonset_image": BROKEN,
                    "coral_daemonset_wait_timeout": 10, "coral_rollout_gate_timeout": 10},
        timeout=300))
    run = seen.pop("result")
    broken = {reason for image, reason in seen["states"] if image == BROKEN}
    # the image is there (no pull error): its pods start and fail, never becoming ready
    assert broken and broken <= {"RunContainerError", "CreateContainerError",
                                 "CrashLoopBackOff", "Error"}, seen["states"]
    assert run.rc != 0, run.explain()
    assert "rolled back" in run.output.lower() or "roll back" in run.output.lower(), \
        run.explain()
    assert ds_image(server) == NEXT
    wait_for(lambda: connected(colony) >= wanted
             and {p["spec"]["containers"][0]["image"] for p in kube.agent_pods().values()}
             == {NEXT}
             and server.store.get("daemonsets", "coral-agent", namespace=SYSTEM)["status"]
             .get("numberReady") == 2, timeout=120, what="back on the previous revision")
    coral_procs.wait_registered(colony, sorted(wanted))
