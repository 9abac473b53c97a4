"""Direct unit tests of the coral.mesh.colony inventory plugin's pure helpers (issue 15):
host naming per service/pod/agent, grouping and host variables."""

from __future__ import annotations

import pytest

from tests.plugins.conftest import plugin

AGENTS = [
    {"agent_id": "node-a", "node_name": "node-a", "runtime_mode": "k8s_daemonset",
     "labels": {}},
    {"agent_id": "web-1", "node_name": "", "runtime_mode": "host", "labels": {"env": "prod"}},
    {"agent_id": "idle", "node_name": "", "runtime_mode": "host", "labels": {}},
]


def _svc(name, agent, port, *, pod="", ns="", container="", prov="discovered", labels=None):
    return {"component_name": name, "agent": agent, "port": port, "pod_name": pod,
            "namespace": ns, "container_name": container, "provenance": prov,
            "labels": labels or {}}


SERVICES = [
    _svc("api", "node-a", 8080, pod="shop-1", ns="shop", container="app",
         labels={"env": "prod"}),
    _svc("metrics", "node-a", 9090, pod="shop-1", ns="shop", container="sidecar",
         prov="explicit"),
    _svc("api", "node-a", 8081, pod="shop-1", ns="shop", container="app"),
    _svc("db", "web-1", 5432),
]


@pytest.fixture(scope="module")
def inv():
    return plugin("inventory.colony")


def test_inventory_host_per_service_names_repeat_with_the_port(inv):
    hosts = inv.build_hosts(AGENTS, SERVICES, host_per="service", options={})
    assert sorted(hosts) == ["api.shop-1.shop-8080", "api.shop-1.shop-8081",
                             "db.web-1", "metrics.shop-1.shop"]
    assert hosts["db.web-1"]["runtime"] == "host" and hosts["db.web-1"]["pod"] == ""


def test_inventory_host_per_pod_merges_services_of_one_pod(inv):
    hosts = inv.build_hosts(AGENTS, SERVICES, host_per="pod", options={})
    assert sorted(hosts) == ["shop-1.shop", "web-1"]
    pod = hosts["shop-1.shop"]
    assert (pod["agent"], pod["namespace"], pod["pod"]) == ("node-a", "shop", "shop-1")
    assert pod["services"] == ["api", "metrics"] and pod["provenance"] == ["discovered",
                                                                           "explicit"]
    assert pod["container"] == "app"  # the first container, sorted
    assert pod["labels"] == {"env": "prod"}


def test_inventory_host_per_agent_lists_idle_agents_unless_filtered(inv):
    hosts = inv.build_hosts(AGENTS, SERVICES, host_per="agent", options={})
    assert sorted(hosts) == ["idle", "node-a", "web-1"]
    narrowed = inv.build_hosts(AGENTS, SERVICES, host_per="agent",
                               options={"namespaces": ["shop"]})
    assert sorted(narrowed) == ["node-a"]
    assert sorted(inv.build_hosts(AGENTS, SERVICES, host_per="agent",
                                  options={"agents": ["idle"]})) == ["idle"]


def test_inventory_groups_sanitise_names_and_follow_label_keys(inv):
    hosts = inv.build_hosts(AGENTS, SERVICES, host_per="pod", options={})
    groups = inv.host_groups(hosts["shop-1.shop"], label_keys=["env", "absent"])
    assert groups == ["runtime_k8s_daemonset", "namespace_shop", "node_node_a",
                      "provenance_discovered", "provenance_explicit", "label_env_prod"]


def test_inventory_host_vars_set_the_connection_plugin_variables_without_secrets(inv):
    hosts = inv.build_hosts(AGENTS, SERVICES, host_per="pod", options={})
    plain = inv.host_vars(hosts["web-1"], connection=None)
    assert plain["coral_provenance"] == "discovered" and "ansible_connection" not in plain
    wired = inv.host_vars(hosts["shop-1.shop"], connection={
        "colony_address": "colony:1", "colony_ca_file": None, "colony_token_file": "/t"})
    assert wired["ansible_connection"] == "coral.mesh.coral"
    assert (wired["ansible_coral_agent"], wired["ansible_coral_pod"],
            wired["ansible_coral_container"]) == ("node-a", "shop-1", "app")
    assert wired["ansible_coral_colony_address"] == "colony:1"
    assert "ansible_coral_colony_ca_file" not in wired  # unset values are not written
    assert not any("token" in key and key != "ansible_coral_colony_token_file" for key in wired)
