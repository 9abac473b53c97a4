"""Acceptance (issue 5, fleet rollout): playbooks/rollout-coral.yml across fixture clusters
(one kubeconfig, one context per cluster), serial canary batches, a health gate per cluster,
rollback of the failing cluster to its previous revision and a stopped rollout.

What the DaemonSet gate proves here: the fixture runs no pods, so "the DaemonSet's agents"
are real `coral agent node` processes started by the test for cluster A's nodes, watching
cluster A's API and registering with a real colony. Cluster B has none, so its gate fails
exactly as it would if its agent pods never came up. The gate asks the colony, not the test.
Each cluster has its own colony (inventory host vars coral_colony_*): a colony checks its
agents' pod-bound tokens with its own cluster's TokenReview.
"""

from __future__ import annotations

import pytest
import yaml

from tests.ansible_k8s.conftest import (
    NodeAgent,
    cluster_colony,
    get,
    merge_kubeconfigs,
    run_playbook,
)
from tests.support import coral_procs
from tests.support.kubeapi import KubeAPIServer

# Default serial [1, '50%'] makes the batches [A], [B, C], [D].
CLUSTERS = {"cluster-a": ["a-node-1", "a-node-2"], "cluster-b": ["b-node-1", "b-node-2"],
            "cluster-c": ["c-node-1"], "cluster-d": ["d-node-1"]}


def image(server: KubeAPIServer) -> str:
    ds = get(server, "daemonsets", "coral-agent", "coral-system")
    return ds["spec"]["template"]["spec"]["containers"][0]["image"]


@pytest.fixture
def fleet(tmp_path, base_vars):
    """Four clusters at v1 (deployed with deploy-coral.yml), one kubeconfig with a context
    each, and real DaemonSet agents for every node of clusters A, C and D, none for B."""
    servers = {name: KubeAPIServer(tmp_path / name, nodes=nodes, context=name).start()
               for name, nodes in CLUSTERS.items()}
    agents: list[NodeAgent] = []
    colonies: dict[str, coral_procs.Colony] = {}
    try:
        for name, server in servers.items():
            colonies[name] = cluster_colony(tmp_path / f"colony-{name}", server)
        kubeconfig = merge_kubeconfigs([s.kubeconfig_path for s in servers.values()],
                                       tmp_path / "fleet.kubeconfig")
        inventory = tmp_path / "clusters.yml"
        inventory.write_text(yaml.safe_dump({"all": {"children": {"coral_clusters": {
            "hosts": {name: {
                "coral_k8s_context": name, "coral_colony_address": colonies[name].address,
                "coral_colony_ca_file": str(colonies[name].data_dir / "ca.crt"),
                "coral_colony_token_file": str(colonies[name].data_dir / "admin.token")}
                for name in CLUSTERS},
            "vars": {"ansible_connection": "local", "coral_k8s_kubeconfig": kubeconfig}}}}}))
        ev = {**base_vars, "coral_mode": "daemonset"}
        run = run_playbook("deploy-coral.yml", inventory=str(inventory),
                           extra_vars={**ev, "coral_hosts": "coral_clusters"})
        assert run.rc == 0, run.explain()
        assert {image(s) for s in servers.values()} == {"coral/agent:0.1.0"}
        for name in ("cluster-a", "cluster-c", "cluster-d"):
            started = [NodeAgent(tmp_path / "agents", colonies[name], node=node,
                                 kubeapi=servers[name]).start() for node in CLUSTERS[name]]
            agents += started
            coral_procs.wait_registered(colonies[name], [a.agent_id for a in started])
        rollout_vars = {
            **ev, "coral_daemonset_image": "coral/agent:0.2.0",
            "coral_rollout_gate_timeout": 4, "coral_rollout_gate_delay": 1}
        yield servers, str(inventory), rollout_vars
    finally:
        for agent in agents:
            agent.stop()
        for colony in colonies.values():
            colony.stop()
        for server in servers.values():
            server.stop()


def assert_rolled_back(server: KubeAPIServer, run) -> None:
    """Back on v1, and v1's ControllerRevision is again the newest (as `rollout undo`)."""
    assert image(server) == "coral/agent:0.1.0", run.explain()
    revisions = server.store.list("controllerrevisions", namespace="coral-system")
    newest = max(revisions, key=lambda r: r["revision"])
    assert newest["data"]["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "coral/agent:0.1.0"


def test_rollout_gate_failure_rolls_back_and_stops(fleet):
    """A (the canary batch) passes its gate and keeps v2. In the batch [B, C], B fails its
    gate (no agents registered) and is rolled back to its previous ControllerRevision (v1)
    while C passes; 50% of the batch failed > max_fail_percentage 0 (the default), so the
    rollout stops and D is never touched although it would pass."""
    servers, inventory, rollout_vars = fleet
    generation_d = get(servers["cluster-d"], "daemonsets", "coral-agent",
                       "coral-system")["metadata"]["generation"]

    run = run_playbook("rollout-coral.yml", inventory=inventory, extra_vars=rollout_vars)
    assert run.rc != 0, run.explain()
    assert image(servers["cluster-a"]) == "coral/agent:0.2.0", run.explain()
    assert run.recap["cluster-a"]["failed"] == 0, run.explain()

    assert "nodes without a connected Coral agent after 4s" in run.output
    assert "b-node-1" in run.output and "b-node-2" in run.output
    assert "rolled back to revision" in run.output and "the rollout stops here" in run.output
    assert run.recap["cluster-b"]["failed"] == 1, run.explain()
    assert_rolled_back(servers["cluster-b"], run)
    assert run.recap["cluster-c"]["failed"] == 0, run.explain()
    assert image(servers["cluster-c"]) == "coral/agent:0.2.0"

    assert "cluster-d" not in run.recap, run.explain()
    ds_d = get(servers["cluster-d"], "daemonsets", "coral-agent", "coral-system")
    assert ds_d["metadata"]["generation"] == generation_d
    assert image(servers["cluster-d"]) == "coral/agent:0.1.0"


@pytest.mark.slow
def test_rollout_max_fail_percentage_50_goes_on_past_a_half_failed_batch(fleet):
    """With coral_rollout_max_fail_percentage=50 the batch [B, C] (50% failed) does not
    stop the rollout: B is still rolled back, and D, the next batch, gets v2. (A batch in
    which every cluster fails always ends the play, whatever the percentage: Ansible.)"""
    servers, inventory, rollout_vars = fleet
    run = run_playbook("rollout-coral.yml", inventory=inventory,
                       extra_vars={**rollout_vars, "coral_rollout_max_fail_percentage": 50})
    assert run.rc != 0, run.explain()  # B still failed
    assert run.recap["cluster-b"]["failed"] == 1, run.explain()
    assert_rolled_back(servers["cluster-b"], run)
    assert run.recap["cluster-d"]["failed"] == 0, run.explain()
    assert {image(servers[n]) for n in ("cluster-a", "cluster-c", "cluster-d")} == \
        {"coral/agent:0.2.0"}


@pytest.mark.slow
def test_rollout_webhook_gate_failure_rolls_deployment_back(tmp_path, base_vars, cluster):
    """webhook mode: the gate asks the webhook's /healthz over HTTPS (checked against the CA
    in its TLS Secret); nothing answers here (the fixture runs no pods), so the gate fails
    and the Deployment is rolled back to its previous ReplicaSet's template (v1).
    Slow-marked: about 40 s, and the daemonset test above covers the gate-and-stop logic."""
    inventory = tmp_path / "one.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"coral_clusters": {
        "hosts": {"fixture": {"coral_k8s_context": "fixture"}},
        "vars": {"ansible_connection": "local",
                 "coral_k8s_kubeconfig": cluster.kubeconfig_path}}}}}))
    ev = {**base_vars, "coral_mode": "webhook"}
    run = run_playbook("deploy-coral.yml", inventory=str(inventory),
                       extra_vars={**ev, "coral_hosts": "coral_clusters"})
    assert run.rc == 0, run.explain()

    closed = coral_procs.free_port()  # nothing listens there
    run = run_playbook("rollout-coral.yml", inventory=str(inventory), extra_vars={
        **ev, "coral_webhook_image": "coral/agent:0.2.0", "coral_rollout_gate_timeout": 2,
        "coral_rollout_gate_delay": 1,
        "coral_webhook_healthz_url": f"https://127.0.0.1:{closed}/healthz"})
    assert run.rc != 0, run.explain()
    assert "the webhook did not answer" in run.output, run.explain()
    assert "rolled back to revision 1" in run.output, run.explain()
    deploy = get(cluster, "deployments", "coral-webhook", "coral-system")
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "coral/agent:0.1.0"
    assert "pod-template-hash" not in deploy["spec"]["template"]["metadata"]["labels"]
