"""Conformance with the real `kubernetes` client: create/get/list/patch/update/delete,
metadata rules, Status objects, and malformed bodies answered with 400."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.kubeapi.conftest import pod


def test_create_get_list_delete_pod_with_real_metadata(core, ns):
    created = core.create_namespaced_pod(ns, pod("p1", labels={"app": "a"}))
    assert created.metadata.uid and created.metadata.creation_timestamp
    rv1 = int(created.metadata.resource_version)
    got = core.read_namespaced_pod("p1", ns)
    assert got.metadata.uid == created.metadata.uid
    assert got.spec.node_name in ("node-a", "node-b")  # bound by the fixture's controller
    assert got.status.phase == "Running"
    items = core.list_namespaced_pod(ns).items
    assert [p.metadata.name for p in items] == ["p1"]
    deleted = core.delete_namespaced_pod("p1", ns)
    assert deleted.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("p1", ns)
    assert err.value.status == 404
    status = json.loads(err.value.body)
    assert status["kind"] == "Status" and status["reason"] == "NotFound"
    assert status["message"] == 'pods "p1" not found'
    assert int(core.list_namespaced_pod(ns).metadata.resource_version) > rv1


def test_resource_version_is_one_global_increasing_counter(core, ns):
    rvs = [int(core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=f"c{i}"))).metadata.resource_version)
        for i in range(3)]
    created = core.create_namespaced_pod(ns, pod("px"))
    assert rvs == sorted(rvs) and len(set(rvs)) == 3
    assert int(created.metadata.resource_version) > rvs[-1]


def test_create_conflict_is_409_already_exists(core, ns):
    core.create_namespaced_pod(ns, pod("dup"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(ns, pod("dup"))
    assert err.value.status == 409
    assert json.loads(err.value.body)["reason"] == "AlreadyExists"


def test_generate_name(core, ns):
    body = pod("")
    body["metadata"] = {"generateName": "web-"}
    created = core.create_namespaced_pod(ns, body)
    assert created.metadata.name.startswith("web-") and len(created.metadata.name) > 4


def test_update_with_stale_resource_version_is_409_conflict(core, ns):
    cm = core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="cm"), data={"a": "1"}))
    cm.data = {"a": "2"}
    core.replace_namespaced_config_map("cm", ns, cm)
    cm.data = {"a": "3"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("cm", ns, cm)  # still carries the old RV
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "Conflict"


def test_patch_merge_strategic_json(core, ns, api_client):
    core.create_namespaced_pod(ns, pod("pp", labels={"a": "1"}))
    # the client sends a dict body as strategic merge patch for pods
    out = core.patch_namespaced_pod("pp", ns, {"metadata": {"labels": {"b": "2"}}})
    assert out.metadata.labels == {"a": "1", "b": "2"}
    # strategic merge: containers merged by name, not replaced
    out = core.patch_namespaced_pod("pp", ns, {"spec": {"containers": [
        {"name": "side", "image": "busybox"}]}})
    assert [c.name for c in out.spec.containers] == ["app", "side"]
    out = core.patch_namespaced_pod("pp", ns, [{"op": "remove", "path": "/metadata/labels/a"}])
    assert out.metadata.labels == {"b": "2"}
    api_client.set_default_header("Content-Type", "application/merge-patch+json")
    try:
        out = core.patch_namespaced_pod("pp", ns, {"metadata": {"labels": {"b": None}}})
    finally:
        api_client.default_headers.pop("Content-Type", None)
    assert not out.metadata.labels


def test_no_op_patch_keeps_resource_version(core, ns):
    cm = core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="same"), data={"a": "1"}))
    out = core.patch_namespaced_config_map("same", ns, {"data": {"a": "1"}})
    assert out.metadata.resource_version == cm.metadata.resource_version


def test_generation_bumps_on_spec_change_only(apps, ns):
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}}, "template": {
               "metadata": {"labels": {"app": "d"}},
               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    created = apps.create_namespaced_deployment(ns, dep)
    assert created.metadata.generation == 1
    assert created.status.ready_replicas == 2 and created.status.observed_generation == 1
    out = apps.patch_namespaced_deployment("d", ns, {"metadata": {"labels": {"x": "y"}}})
    assert out.metadata.generation == 1
    out = apps.patch_namespaced_deployment("d", ns, {"spec": {"replicas": 3}})
    assert out.metadata.generation == 2 and out.status.observed_generation == 2
    assert out.status.available_replicas == 3
    rs = apps.list_namespaced_replica_set(ns).items
    assert len(rs) == 1 and rs[0].metadata.owner_references[0].name == "d"
    apps.delete_namespaced_deployment("d", ns)
    assert apps.list_namespaced_replica_set(ns).items == []  # garbage-collected


def test_cluster_scoped_and_namespaced(core, raw):
    nodes = [n.metadata.name for n in core.list_node().items]
    assert nodes == ["node-a", "node-b"]
    status, body = raw("GET", "/api/v1/namespaces/default/nodes")
    assert status == 404
    assert any(n.metadata.name == "default" for n in core.list_namespace().items)


def test_create_in_missing_namespace_is_404(core):
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("nope-ns", pod("x"))
    assert err.value.status == 404
    assert json.loads(err.value.body)["message"] == 'namespaces "nope-ns" not found'


def test_delete_namespace_deletes_its_objects(core, server):
    server.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}})
    core.create_namespaced_pod("gone", pod("a"))
    core.delete_namespace("gone")
    assert server.store.list("pods", namespace="gone") == []


@pytest.mark.parametrize("body, content_type, needle", [
    (b"{not json", "application/json", "not valid JSON"),
    (b"[1,2]", "application/json", "JSON object"),
    (b"", "application/json", "empty"),
    (b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}', "application/json",
     "spec.containers"),
    (b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"Bad_Name"},"spec":{}}',
     "application/json", "metadata.name"),
    (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}', "application/json",
     "URL is for v1/Pod"),
    (b"\x00\xff", "application/vnd.kubernetes.protobuf", "not supported"),
])
def test_malformed_bodies_get_status_naming_the_problem(raw, ns, body, content_type, needle):
    status, doc = raw("POST", f"/api/v1/namespaces/{ns}/pods", body, content_type)
    assert status in (400, 415, 422), doc
    assert doc["kind"] == "Status" and needle in doc["message"], doc


def test_bad_selectors_and_patches_are_400(raw, ns, core):
    core.create_namespaced_pod(ns, pod("s"))
    status, doc = raw("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector=a%20in%20")
    assert status == 400 and "labelSelector" in doc["message"]
    status, doc = raw("GET", f"/api/v1/namespaces/{ns}/pods?fieldSelector=spec.bogus%3Dx")
    assert status == 400 and "spec.bogus" in doc["message"]
    status, doc = raw("PATCH", f"/api/v1/namespaces/{ns}/pods/s", b'{"a":1}',
                      "application/json-patch+json")
    assert status == 400 and "array" in doc["message"]
    status, doc = raw("PATCH", f"/api/v1/namespaces/{ns}/pods/s", b"{}", "text/plain")
    assert status == 415


def test_unauthenticated_request_is_401(raw):
    status, doc = raw("GET", "/api/v1/pods", token="wrong")
    assert status == 401 and doc["reason"] == "Unauthorized"


def test_server_side_apply_with_field_manager(raw, ns):
    doc = (b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: '1'\n"
           b"  b: '2'\n")
    path = f"/api/v1/namespaces/{ns}/configmaps/ssa?fieldManager=tool"
    status, out = raw("PATCH", path, doc, "application/apply-patch+yaml")
    assert status == 200 and out["data"] == {"a": "1", "b": "2"}
    status, out = raw("PATCH", path, doc.replace(b"  b: '2'\n", b""),
                      "application/apply-patch+yaml")
    assert out["data"] == {"a": "1"}  # a field the manager stopped applying is removed
    assert out["metadata"]["managedFields"][-1]["manager"] == "tool"
    status, out = raw("PATCH", path.split("?")[0], doc, "application/apply-patch+yaml")
    assert status == 422 and "fieldManager" in out["message"]


def test_defaults_on_write(core, ns):
    """Defaulting as the real server: port protocol, pull policy, Service clusterIP."""
    created = core.create_namespaced_pod(ns, pod("d"))
    assert created.spec.containers[0].ports[0].protocol == "TCP"
    assert created.spec.containers[0].image_pull_policy == "Always"  # untagged image
    svc = core.create_namespaced_service(ns, {"metadata": {"name": "s"}, "spec": {
        "selector": {"app": "x"}, "ports": [{"port": 80}]}})
    assert svc.spec.cluster_ip and svc.spec.type == "ClusterIP"
    assert svc.spec.ports[0].target_port == 80
    again = core.patch_namespaced_service("s", ns, {"spec": {"ports": [{"port": 80}]}})
    assert again.metadata.resource_version == svc.metadata.resource_version


def test_client_certificate_auth(tmp_path):
    """auth="client-cert": the kubeconfig carries a client certificate; TLS without one
    is refused."""
    import ssl
    import urllib.request

    from kubernetes import config as kconfig

    from tests.support.kubeapi import KubeAPIServer

    with KubeAPIServer(tmp_path, auth="client-cert") as server:
        api = client.CoreV1Api(kconfig.new_client_from_config(
            config_file=server.kubeconfig_path))
        assert [n.metadata.name for n in api.list_node().items] == ["node-1"]
        ctx = ssl.create_default_context(cafile=server.ca_path)
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(server.url + "/api/v1/nodes", context=ctx, timeout=5).read()


def test_deletecollection_dry_run_preconditions_and_orphan(core, apps, ns):
    for i, app in enumerate(["x", "x", "y"]):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"m{i}",
                                                            "labels": {"app": app}}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "dry"}}, dry_run="All")
    assert len(core.list_namespaced_config_map(ns).items) == 3  # dry run stored nothing
    core.delete_collection_namespaced_config_map(ns, label_selector="app=x")
    assert [m.metadata.name for m in core.list_namespaced_config_map(ns).items] == ["m2"]
    with pytest.raises(ApiException) as err:
        core.delete_namespaced_config_map("m2", ns, body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid="not-the-uid")))
    assert err.value.status == 409 and "Precondition failed" in err.value.body
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "o"},
           "spec": {"selector": {"matchLabels": {"app": "o"}}, "template": {
               "metadata": {"labels": {"app": "o"}},
               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    apps.create_namespaced_deployment(ns, dep)
    apps.delete_namespaced_deployment("o", ns, propagation_policy="Orphan")
    assert len(apps.list_namespaced_replica_set(ns).items) == 1  # orphaned, not collected
