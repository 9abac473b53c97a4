"""Issue 14 §4.3 "playbooks/rollout-coral.yml: the canary gate passes on a healthy rollout
and rolls back when the new image's pods fail readiness — seen through real pod status":
deploy-coral.yml and rollout-coral.yml run as a user runs them against the fixture, the
DaemonSet's pods run from the image on the pod runner, the role's rollout wait reads the
status the live controller computes from those pods, and the gate asks the colony which
node agents (in those pods) are connected."""

from __future__ import annotations

import subprocess

import yaml

from tests.ansible_k8s.conftest import PYTHON, run_playbook
from tests.support import coral_procs
from tests.support.coral_procs import wait_for
from tests.support.kubecluster import NODES, SYSTEM

GOOD, NEXT, MISSING = "coral/agent:0.1.0", "coral/agent:0.2.0", "coral/agent:9.9.9"


def ds_image(server) -> str:
    ds = server.store.get("daemonsets", "coral-agent", namespace=SYSTEM)
    return ds["spec"]["template"]["spec"]["containers"][0]["image"]


def connected(colony) -> set[str]:
    with colony.client() as c:
        return {a["agent_id"] for a in c.list_agents() if a.get("connected")}


def test_e2e_rollout_canary_gate_passes_healthy_and_rolls_back_unready(kube, cluster_colony,
                                                                        tmp_path):
    colony = cluster_colony
    server = kube.server
    inventory = tmp_path / "clusters.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"coral_clusters": {
        "hosts": {"cluster-a": {
            "coral_k8s_kubeconfig": server.kubeconfig_path,
            "coral_colony_address": colony.address,
            "coral_colony_ca_file": str(colony.data_dir / "ca.crt"),
            "coral_colony_token_file": str(colony.data_dir / "admin.token")}},
        "vars": {"ansible_connection": "local"}}}}}))
    ev = {"ansible_python_interpreter": PYTHON, "coral_mode": "daemonset",
          "coral_k8s_colony_address": colony.address,
          "coral_k8s_colony_ca_file": str(colony.data_dir / "ca.crt"),
          "coral_k8s_colony_id": colony.colony_id,
          "coral_daemonset_settings": {"cri_socket": kube.runtime.socket},
          "coral_daemonset_wait_timeout": 60}
    if server.store.list("daemonsets", namespace=SYSTEM):  # another e2e test deployed it
        server.store.delete("daemonsets", "coral-agent", namespace=SYSTEM)
    run = run_playbook("deploy-coral.yml", inventory=str(inventory),
                       extra_vars={**ev, "coral_hosts": "coral_clusters",
                                   "coral_daemonset_wait": False})
    assert run.rc == 0, run.explain()
    # FIXTURE NOTE (conftest): agents reach the loopback colony and API with hostNetwork;
    # set outside the applied manifest, so later applies keep it and revisions carry it.
    server.store.patch("daemonsets", "coral-agent", {"spec": {"template": {"spec": {
        "hostNetwork": True}}}}, namespace=SYSTEM)
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

    # Unhealthy: an image whose pods never become ready (it cannot be pulled): the role's
    # rollout wait sees the real status, the cluster fails and is rolled back.
    run = run_playbook("rollout-coral.yml", inventory=str(inventory),
                       extra_vars={**ev, **gate, "coral_daemonset_image": MISSING,
                                   "coral_daemonset_wait_timeout": 10,
                                   "coral_rollout_gate_timeout": 10}, timeout=300)
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
