"""Issue 6, "Inventory plugin and connection plugin run in a real ansible-playbook against
agents in the real pod harness": the coral.mesh.colony inventory plugin (hosts per pod /
service / agent, host vars, groups, constructed groups, cache)."""

from __future__ import annotations

import pytest


def test_inventory_plugin_hosts_per_pod_with_vars_and_groups(fleet):
    source = fleet.inventory_file("pods", host_per="pod", label_groups=["env"],
                                  provenance=["discovered", "explicit"],
                                  keyed_groups=[{"key": "coral_runtime", "prefix": "mode"}],
                                  compose={"in_pod": "coral_pod != ''"},
                                  groups={"sidecars": "coral_runtime == 'k8s_sidecar'"})
    inv = fleet.inventory(source)
    pod = inv["_meta"]["hostvars"]["shop-7d9f.payments"]
    assert {k: pod[k] for k in ("coral_agent", "coral_namespace", "coral_pod",
                                "coral_container", "coral_node", "coral_runtime")} == {
        "coral_agent": "pod-payments.shop-7d9f", "coral_namespace": "payments",
        "coral_pod": "shop-7d9f", "coral_container": "web", "coral_node": "node-1",
        "coral_runtime": "k8s_sidecar"}
    assert pod["coral_provenance"] == "discovered" and "checkout" in pod["coral_services"]
    assert pod["in_pod"] is True
    # the connection plugin's variables (never the token)
    assert pod["ansible_connection"] == "coral.mesh.coral"
    assert pod["ansible_coral_container"] == "web" and pod["ansible_coral_pod"] == "shop-7d9f"
    assert pod["ansible_coral_colony_address"] == fleet.colony.address
    assert not any("token" in k and "file" not in k for k in pod)
    host = inv["_meta"]["hostvars"]["host-1"]
    assert host["coral_runtime"] == "native" and host["coral_pod"] == ""
    assert host["coral_labels"]["env"] == "test" and "api" in host["coral_services"]
    groups = {name: set(body.get("hosts", [])) for name, body in inv.items() if name != "_meta"}
    assert "shop-7d9f.payments" in groups["namespace_payments"]
    assert "shop-7d9f.payments" in groups["node_node_1"]
    assert "shop-7d9f.payments" in groups["runtime_k8s_sidecar"]
    assert "shop-7d9f.payments" in groups["provenance_discovered"]
    assert "shop-7d9f.payments" in groups["sidecars"] and "host-1" not in groups["sidecars"]
    assert {"host-1", "host-2"} <= groups["runtime_native"] & groups["mode_native"]
    assert {"host-1", "host-2"} <= groups["provenance_explicit"]
    assert groups["label_env_test"] == {"host-1"} and groups["label_env_prod"] == {"host-2"}


@pytest.mark.parametrize("host_per, expected", [
    ("service", {"checkout.shop-7d9f.payments", "api.host-1", "api.host-2"}),
    ("agent", {"pod-payments.shop-7d9f", "host-1", "host-2"}),
])
def test_inventory_plugin_host_per_service_and_agent(fleet, host_per, expected):
    source = fleet.inventory_file(f"per-{host_per}", host_per=host_per,
                                  services=["checkout", "api"])
    hostvars = fleet.inventory(source)["_meta"]["hostvars"]
    assert set(hostvars) == expected
    if host_per == "service":
        svc = hostvars["checkout.shop-7d9f.payments"]
        assert svc["coral_service"] == "checkout" and svc["coral_port"] == 8080
        assert svc["coral_container"] == "web" and svc["coral_namespace"] == "payments"
        assert hostvars["api.host-2"]["coral_port"] == 18082


def test_inventory_plugin_filters(fleet):
    source = fleet.inventory_file("filtered", host_per="agent", selector={"env": "prod"})
    assert set(fleet.inventory(source)["_meta"]["hostvars"]) == {"host-2"}
    source = fleet.inventory_file("ns", namespaces=["payments"])
    assert set(fleet.inventory(source)["_meta"]["hostvars"]) == {"shop-7d9f.payments"}


def test_inventory_plugin_cache_serves_hosts_when_the_colony_is_unreachable(fleet, tmp_path):
    source = fleet.inventory_file("cached", namespaces=["payments"], cache=True,
                                  cache_plugin="ansible.builtin.jsonfile",
                                  cache_connection=str(tmp_path / "cache"), cache_timeout=600)
    assert "shop-7d9f.payments" in fleet.inventory(source)["_meta"]["hostvars"]
    assert list((tmp_path / "cache").iterdir()), "the plugin wrote no cache entry"
    dead = {"CORAL_COLONY_ADDRESS": "127.0.0.1:1"}
    assert "shop-7d9f.payments" in fleet.inventory(source, env=dead)["_meta"]["hostvars"]
    flushed = fleet.run(str(fleet.env["PATH"].split(":")[0] + "/ansible-inventory"), "-i",
                        str(source), "--list", "--flush-cache", env=dead)
    assert "colony unreachable at 127.0.0.1:1" in flushed.stdout + flushed.stderr
