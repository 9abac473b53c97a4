"""Issue 16, "DaemonSet configuration": role variables for include/exclude namespaces and
labels, overrides, agent labels and mode, delivered as the ConfigMap coral-agent-config
that the agent reads (the DaemonSet mounts it at CORAL_AGENT_CONFIG); a change rolls the
agent pods (the configuration's hash in the pod template). A real `ansible-playbook
deploy-coral.yml` against the API server fixture; the ConfigMap's YAML is then loaded the
way `coral agent node` loads it at start."""

from __future__ import annotations

from coral_lib.agent import node
from coral_lib.commands import agent_node
from coral_lib.config import loader
from tests.ansible_k8s.conftest import get, run_playbook

ROLE_VARS = {
    "coral_daemonset_include_namespaces": ["shop"],
    "coral_daemonset_exclude_namespaces": ["scratch"],
    "coral_daemonset_include_labels": {"coral.io/enabled": "true"},
    "coral_daemonset_exclude_labels": {"tier": "batch"},
    "coral_daemonset_overrides": [{"selector": {"podLabel": "app=pay"},
                                   "service": {"name": "payments",
                                               "health": {"endpoint": "/healthz"}}}],
    "coral_daemonset_agent_labels": {"env": "prod"},
    "coral_daemonset_agent_mode": "active",
}


def test_role_variables_reach_the_agent_through_its_configmap(cluster, base_vars, tmp_path):
    env = {"K8S_AUTH_KUBECONFIG": cluster.kubeconfig_path}
    ev = {**base_vars, "coral_mode": "daemonset", **ROLE_VARS}
    run = run_playbook("deploy-coral.yml", extra_vars=ev, env=env)
    assert run.rc == 0, run.explain()
    text = get(cluster, "configmaps", "coral-agent-config", "coral-system")["data"]["agent.yaml"]
    ds = get(cluster, "daemonsets", "coral-agent", "coral-system")
    first_hash = ds["spec"]["template"]["metadata"]["annotations"]["coral.io/agent-config-sha256"]
    container = ds["spec"]["template"]["spec"]["containers"][0]
    mounted = {e["name"]: e.get("value") for e in container["env"]}["CORAL_AGENT_CONFIG"]
    assert mounted == "/etc/coral/agent/agent.yaml"

    # what kubelet projects from the ConfigMap, read as `coral agent node` reads it
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    cfg = loader.load_agent_config(agent_node.config_path(None, {"CORAL_AGENT_CONFIG":
                                                                 str(path)}), environ={})
    assert (cfg.agent.mode, cfg.agent.labels) == ("active", {"env": "prod"})
    k8s = node.effective_filters(cfg.discovery.kubernetes, node.NodeOptions())
    assert (k8s.include_namespaces, k8s.exclude_namespaces) == (("shop",), ("scratch",))
    assert (k8s.include_labels, k8s.exclude_labels) == ({"coral.io/enabled": "true"},
                                                        {"tier": "batch"})
    assert cfg.overrides[0].service.name == "payments"

    run = run_playbook("deploy-coral.yml", extra_vars=ev, env=env)
    assert run.rc == 0 and run.changed == 0, run.explain()  # idempotent
    run = run_playbook("deploy-coral.yml", extra_vars={
        **ev, "coral_daemonset_exclude_namespaces": ["scratch", "tmp"]}, env=env)
    assert run.rc == 0, run.explain()
    ds = get(cluster, "daemonsets", "coral-agent", "coral-system")
    assert ds["spec"]["template"]["metadata"]["annotations"][
        "coral.io/agent-config-sha256"] != first_hash  # the pods roll to the new config

    run = run_playbook("deploy-coral.yml", extra_vars={**ev, "coral_state": "absent"}, env=env)
    assert run.rc == 0, run.explain()
    assert get(cluster, "configmaps", "coral-agent-config", "coral-system") is None
