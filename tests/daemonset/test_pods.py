"""Pod -> ServiceInfo per container port (issue 4 "Discovery engine"), pure."""

from __future__ import annotations

import pytest

from coral_lib import service
from coral_lib.discovery import pods
from tests.daemonset.conftest import pod


@pytest.mark.parametrize(("labels", "owner", "expected"), [
    ({"coral.io/service-name": "svc", "app.kubernetes.io/name": "k", "app": "a"}, None, "svc"),
    ({"app.kubernetes.io/name": "k", "app": "a"}, None, "k"),
    ({"app": "a"}, None, "a"),
    ({"pod-template-hash": "7d9f8c6b5"}, {"kind": "ReplicaSet", "name": "payments-7d9f8c6b5"},
     "payments"),
    ({}, {"kind": "ReplicaSet", "name": "checkout-5c4bd9f7xz"}, "checkout"),
    ({}, {"kind": "StatefulSet", "name": "db"}, "db"),
    ({}, {"kind": "DaemonSet", "name": "logs"}, "logs"),
    ({}, None, "lonely"),
])
def test_component_name_precedence(labels, owner, expected):
    """coral.io/service-name, else app.kubernetes.io/name, else app, else the owning
    workload's name (ReplicaSet hash stripped), else the pod name."""
    body = pod("lonely", labels=labels, owner=owner)
    (svc,) = pods.candidates(body)
    assert svc.component_name == expected


def test_one_candidate_per_container_port_with_where_it_runs():
    body = pod("web", labels={"app": "web", "tier": "front"}, containers=[
        {"name": "app", "ports": [{"containerPort": 8080, "name": "http"},
                                  {"containerPort": 9090, "protocol": "TCP"}],
         "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}}},
        {"name": "sidecar", "ports": [{"containerPort": 5353, "protocol": "UDP"}]},
        {"name": "noports"}])
    found = pods.candidates(body, node_labels={"zone": "z1"})
    assert [(s.container_name, s.port, s.service_type, s.health_endpoint) for s in found] == [
        ("app", 8080, "http", "/ready"), ("app", 9090, "tcp", ""), ("sidecar", 5353, "udp", "")]
    first = found[0]
    assert (first.namespace, first.pod_name, first.node_name) == ("shop", "web", "node-a")
    assert first.labels == {"app": "web", "tier": "front"} and first.node_labels == {"zone": "z1"}
    assert first.provenance == service.Provenance.DISCOVERED


def test_readiness_probe_on_a_numbered_port_and_single_probe():
    body = pod("web", containers=[{"name": "app", "ports": [{"containerPort": 80}],
                                   "readinessProbe": {"httpGet": {"path": "/hz", "port": 80}}}])
    assert pods.candidates(body)[0].health_endpoint == "/hz"


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_finished_pods_have_no_services(phase):
    assert pods.candidates(pod("job", phase=phase)) == []


def test_pod_being_deleted_has_no_services_and_bad_ports_are_skipped():
    body = pod("web")
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert pods.candidates(body) == []
    odd = pod("odd", containers=[{"name": "a", "ports": [{"containerPort": 0},
                                                         {"containerPort": "80"}, {}]}])
    assert pods.candidates(odd) == []
