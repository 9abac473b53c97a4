"""Acceptance (issue 5, fleet rollout): playbooks/rollout-coral.yml across fixture clusters
(one kubeconfig, one context per cluster), serial canary batches, a health gate per cluster,
rollback of the failing cluster to its previous revision and a stopped rollout.

What the DaemonSet gate proves here: the fixture runs no pods, so "the DaemonSet's agents"
are real `coral agent node` processes started by the test for cluster A's nodes, watching
cluster A's API and registering with a real colony. Cluster B has none, so its gate fails
exactly as it would if its agent pods never came up. The gate asks the colony, not the test.
"""

from __future__ import annotations

import pytest
import yaml

from tests.ansible_k8s.conftest import NodeAgent, get, merge_kubeconfigs, run_playbook
from tests.support import coral_procs
from tests.support.kubeapi import KubeAPIServer

CLUSTERS = {"cluster-a": ["a-node-1", "a-node-2"], "cluster-b": ["b-node-1", "b-node-2"],
            "cluster-c": ["c-node-1"]}


def image(server: KubeAPIServer) -> str:
    ds = get(server, "daemonsets", "coral-agent", "coral-system")
    return ds["spec"]["template"]["spec"]["containers"][0]["image"]


def test_rollout_gate_failure_rolls_back_and_stops(tmp_path, base_vars, colony):
    """A (canary) passes its gate and keeps v2; B fails its gate (no agents registered),
    is rolled back to its previous ControllerRevision (v1) and the rollout stops, so C is
    never touched (max_fail_percentage 0)."""
    servers = {name: KubeAPIServer(tmp_path / name, nodes=nodes, context=name).start()
               for name, nodes in CLUSTERS.items()}
    agents: list[NodeAgent] = []
    try:
        kubeconfig = merge_kubeconfigs([s.kubeconfig_path for s in servers.values()],
                                       tmp_path / "fleet.kubeconfig")
        inventory = tmp_path / "clusters.yml"
        inventory.write_text(yaml.safe_dump({"all": {"children": {"coral_clusters": {
            "hosts": {name: {"coral_k8s_context": name} for name in CLUSTERS},
            "vars": {"ansible_connection": "local", "coral_k8s_kubeconfig": kubeconfig}}}}}))
        ev = {**base_vars, "coral_mode": "daemonset"}

        run = run_playbook("deploy-coral.yml", inventory=str(inventory),
                           extra_vars={**ev, "coral_hosts": "coral_clusters"})
        assert run.rc == 0, run.explain()
        assert {image(s) for s in servers.values()} == {"coral/agent:0.1.0"}
        generation_c = get(servers["cluster-c"], "daemonsets", "coral-agent",
                           "coral-system")["metadata"]["generation"]

        a_kubeconfig = servers["cluster-a"].kubeconfig_path
        agents = [NodeAgent(tmp_path / "agents", colony, node=node, kubeconfig=a_kubeconfig)
                  .start() for node in CLUSTERS["cluster-a"]]
        coral_procs.wait_registered(colony, [a.agent_id for a in agents])

        run = run_playbook("rollout-coral.yml", inventory=str(inventory), extra_vars={
            **ev, "coral_daemonset_image": "coral/agent:0.2.0",
            "coral_rollout_gate_timeout": 4, "coral_rollout_gate_delay": 1,
            "coral_colony_address": colony.address,
            "coral_colony_ca_file": str(colony.data_dir / "ca.crt"),
            "coral_colony_token_file": str(colony.data_dir / "admin.token")})
        assert run.rc != 0, run.explain()
        assert image(servers["cluster-a"]) == "coral/agent:0.2.0", run.explain()
        assert run.recap["cluster-a"]["failed"] == 0, run.explain()

        assert image(servers["cluster-b"]) == "coral/agent:0.1.0", run.explain()
        assert "nodes without a connected Coral agent after 4s" in run.output
        assert "b-node-1" in run.output and "b-node-2" in run.output
        assert "rolled back to revision" in run.output and "the rollout stops here" in run.output
        revisions = servers["cluster-b"].store.list("controllerrevisions", namespace="coral-system")
        newest = max(revisions, key=lambda r: r["revision"])
        template = newest["data"]["spec"]["template"]
        assert template["spec"]["containers"][0]["image"] == "coral/agent:0.1.0"

        assert "cluster-c" not in run.recap, run.explain()
        ds_c = get(servers["cluster-c"], "daemonsets", "coral-agent", "coral-system")
        assert ds_c["metadata"]["generation"] == generation_c
        assert image(servers["cluster-c"]) == "coral/agent:0.1.0"
    finally:
        for agent in agents:
            agent.stop()
        for server in servers.values():
            server.stop()


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
