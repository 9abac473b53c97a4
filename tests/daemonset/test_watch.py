"""The pod watch engine against the API server fixture (issue 4 "Discovery engine"):
bookmarks, resume without relist, 410 relist by diff, backoff, filters through the engine."""

from __future__ import annotations

import threading

import pytest

from coral_lib import config
from coral_lib.agent import node
from coral_lib.discovery import kubernetes
from tests.daemonset.conftest import namespace, pod
from tests.support.coral_procs import wait_for


class Running:
    """A PodWatcher on its own thread; records the cache size at every change."""

    def __init__(self, server, *, node_name: str = "node-a", resync: float = 300.0):
        self.sizes: list[int] = []
        self.changes = threading.Event()
        self.watcher = kubernetes.PodWatcher(
            kubernetes.api_from(kubeconfig=server.kubeconfig_path), node_name=node_name,
            resync_interval=resync, on_change=self._changed)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watcher.run, args=(self.stop,), daemon=True)

    def _changed(self) -> None:
        self.sizes.append(len(self.watcher.pods))
        self.changes.set()

    def __enter__(self) -> Running:
        self.thread.start()
        wait_for(self.watcher.synced.is_set, timeout=10, what="first list")
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()

    def names(self) -> set[str]:
        return set(self.watcher.pods)


def test_bookmarks_advance_the_resource_version(kubeapi):
    with Running(kubeapi) as run:
        start = run.watcher.resource_version
        kubeapi.store.create(pod("other", node="node-b"))  # not our node: only a bookmark
        wait_for(lambda: run.watcher.stats.bookmarks > 0
                 and int(run.watcher.resource_version) > int(start), timeout=5,
                 what="a bookmark carrying a newer resourceVersion")
        assert run.names() == set() and run.watcher.stats.lists == 1


def test_dropped_watch_resumes_without_relist(kubeapi):
    with Running(kubeapi) as run:
        wait_for(lambda: kubeapi.store.watcher_count() == 1, what="watch open")
        watches = run.watcher.stats.watches
        kubeapi.faults.drop_watches()
        kubeapi.store.create(pod("while-dropped"))  # happens while no watch is open
        wait_for(lambda: "shop/while-dropped" in run.names(), timeout=10, what="event seen")
        assert run.watcher.stats.watches > watches
        assert run.watcher.stats.lists == 1, "a dropped watch must resume, not list again"


def test_forced_410_relists_and_reconciles_by_diff(kubeapi):
    """No wipe: the cache never shrinks to empty; deletions missed during the gap are found."""
    for i in range(5):
        kubeapi.store.create(pod(f"p{i}"))
    with Running(kubeapi) as run:
        assert len(run.names()) == 5
        run.sizes.clear()
        kubeapi.faults.force_gone()
        kubeapi.compact()
        kubeapi.store.delete("pods", "p0", namespace="shop")
        kubeapi.faults.drop_watches()
        wait_for(lambda: run.watcher.stats.gone >= 1 and run.watcher.stats.lists >= 2
                 and "shop/p0" not in run.names(), timeout=10, what="relist after 410")
        assert run.names() == {f"shop/p{i}" for i in range(1, 5)}
        assert run.sizes and min(run.sizes) == 4, f"cache sizes seen: {run.sizes}"


def test_errors_back_off_instead_of_looping_then_recover(kubeapi):
    """500s: exponential backoff with jitter (a handful of tries in 4 s, not thousands)."""
    kubeapi.store.create(pod("p"))
    kubeapi.faults.fail(1000, code=500, path=r"/pods")
    run = Running(kubeapi)
    run.thread.start()
    try:
        threading.Event().wait(4)
        errors = run.watcher.stats.errors
        assert 3 <= errors <= 9, run.watcher.stats  # 0.05-0.1, 0.1-0.2, ... cumulative
        kubeapi.faults.clear()
        wait_for(run.watcher.synced.is_set, timeout=15, what="recovery after the 500s")
        assert run.names() == {"shop/p"}
    finally:
        run.stop.set()


def test_backoff_delay_is_exponential_with_jitter_and_capped():
    assert kubernetes.backoff_delay(0, rand=lambda: 0.0) == pytest.approx(0.1)
    assert kubernetes.backoff_delay(3, rand=lambda: 1.0) == pytest.approx(1.6)
    assert kubernetes.backoff_delay(50, rand=lambda: 1.0) == kubernetes.BACKOFF_CAP


def test_status_only_changes_do_not_count_as_changes():
    cache: dict = {}
    body = pod("a", phase="Pending")
    body["metadata"]["uid"] = "u"
    assert kubernetes.apply_event(cache, etype="ADDED", obj=body)
    again = {**body, "status": {"phase": "Pending", "conditions": [{"type": "Ready"}]}}
    assert not kubernetes.apply_event(cache, etype="MODIFIED", obj=again)
    assert kubernetes.apply_event(cache, etype="MODIFIED", obj={**body, "status": {
        "phase": "Succeeded"}})
    assert kubernetes.apply_event(cache, etype="DELETED", obj=body) and cache == {}
    assert not kubernetes.apply_event(cache, etype="DELETED", obj=body)


FILTER_CASES = [
    # (config filters, flags, expected pod names)
    ({}, {}, {"plain", "optin", "labelled", "sys-opt-in"}),
    ({"excludeNamespaces": ["shop"]}, {}, {"sys-opt-in"}),
    ({"includeLabels": {"coral.io/enabled": "true"}}, {}, {"labelled", "optin",
                                                            "sys-opt-in"}),
    ({}, {"exclude_labels": {"coral.io/enabled": "true"}}, {"plain", "optin"}),
    ({"includeNamespaces": ["kube-system"]}, {}, {"system", "sys-opt-in", "optin"}),
]


@pytest.mark.parametrize(("cfg_filters", "flags", "expected"), FILTER_CASES)
def test_filter_precedence_through_the_engine(kubeapi, cfg_filters, flags, expected):
    """Real fixture pods, watched, then filtered: exclude beats include, discover=true
    beats include lists and the system-namespace rule, discover=false beats everything."""
    kubeapi.store.create(pod("plain"))
    kubeapi.store.create(pod("off", annotations={"coral.io/discover": "false"},
                             labels={"coral.io/enabled": "true"}))
    kubeapi.store.create(pod("optin", annotations={"coral.io/discover": "true"}))
    kubeapi.store.create(pod("labelled", labels={"coral.io/enabled": "true"}))
    kubeapi.store.create(pod("system", namespace="kube-system"))
    kubeapi.store.create(pod("sys-opt-in", namespace="kube-system",
                             labels={"coral.io/enabled": "true"},
                             annotations={"coral.io/discover": "true"}))
    namespace(kubeapi, "elsewhere")
    kubeapi.store.create(pod("other-node", node="node-b", namespace="elsewhere"))
    filters = node.effective_filters(config.KubernetesDiscovery(**cfg_filters),
                                     node.NodeOptions(**flags))
    with Running(kubeapi) as run:
        pod_list, labels = run.watcher.snapshot()
    found = node.discovered(pod_list, node_labels=labels, filters=filters)
    assert {s.pod_name for s in found} == expected
    assert all(s.node_labels["kubernetes.io/hostname"] == "node-a" for s in found)


def test_cache_keeps_pods_without_managed_fields(kubeapi):
    """Issue 15, "DaemonSet agent with 110 pods <= 45 MB": the watch cache drops
    metadata.managedFields (no agent code reads them) from listed and watched pods alike,
    and keeps what discovery and exec resolution read."""
    kubeapi.store.create(pod("listed"), field_manager="kubectl-client-side-apply")
    assert kubeapi.store.get("pods", "listed", namespace="shop")["metadata"]["managedFields"]
    with Running(kubeapi) as run:
        kubeapi.store.create(pod("watched"), field_manager="kubelet")
        wait_for(lambda: "shop/watched" in run.names(), timeout=10, what="event seen")
        for key in ("shop/listed", "shop/watched"):
            cached = run.watcher.pods[key]
            served = kubeapi.store.get("pods", key.split("/")[1], namespace="shop")
            assert served["metadata"]["managedFields"]
            assert "managedFields" not in cached["metadata"]
            assert cached["metadata"]["uid"] == served["metadata"]["uid"]
            assert cached == kubernetes.slim(served)
            assert cached["spec"]["containers"][0]["ports"] == \
                served["spec"]["containers"][0]["ports"]


# A pod as a real cluster serves it (a Deployment's pod after kubelet started it), less
# managedFields: what the cache must keep, and the rest it must not.
REAL_POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {
        "name": "web-7d4b9c-x2x9z", "namespace": "shop", "uid": "u-1",
        "resourceVersion": "4711", "creationTimestamp": "2026-11-30T10:00:00Z",
        "generateName": "web-7d4b9c-", "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
        "annotations": {"coral.io/port": "8080", "kubectl.kubernetes.io/default-container": "app"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c",
                             "uid": "rs-1", "controller": True, "blockOwnerDeletion": True}],
        "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:spec": {}}}]},
    "spec": {
        "nodeName": "node-a", "serviceAccountName": "default", "restartPolicy": "Always",
        "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}],
        "containers": [{
            "name": "app", "image": "registry.example/web:1.2.3", "args": ["--port", "8080"],
            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            "env": [{"name": f"SETTING_{i}", "value": "x" * 40} for i in range(20)],
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
            "livenessProbe": {"httpGet": {"path": "/live", "port": "http"}},
            "volumeMounts": [{"name": "kube-api-access-abcde", "readOnly": True,
                              "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 300}]},
    "status": {
        "phase": "Running", "podIP": "10.0.0.7", "hostIP": "192.168.1.2", "qosClass": "Burstable",
        "conditions": [{"type": t, "status": "True"} for t in ("Initialized", "Ready",
                                                                "ContainersReady", "PodScheduled")],
        "containerStatuses": [{
            "name": "app", "ready": True, "restartCount": 0, "image": "registry.example/web:1.2.3",
            "imageID": "registry.example/web@sha256:" + "0" * 64,
            "containerID": "containerd://" + "c" * 64,
            "state": {"running": {"startedAt": "2026-11-30T10:00:05Z"}}}]}}


def test_slim_keeps_only_what_the_agent_reads_of_a_real_pod():
    """Issue 15, "the watch cache for 110 pods: store only the fields discovery needs"."""
    assert kubernetes.slim(REAL_POD) == {
        "metadata": {k: REAL_POD["metadata"][k] for k in (
            "name", "namespace", "uid", "labels", "annotations", "ownerReferences",
            "resourceVersion")},
        "spec": {"nodeName": "node-a", "containers": [{
            "name": "app", "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"},
                               "periodSeconds": 5}}]},
        "status": {"phase": "Running", "podIP": "10.0.0.7", "containerStatuses": [{
            "name": "app", "containerID": "containerd://" + "c" * 64, "ready": True}]}}
    assert REAL_POD["metadata"]["managedFields"]  # the event's object is not changed
    # and discovery finds the same service in the slim pod as in the served one
    filters = config.KubernetesDiscovery()
    assert node.discovered([kubernetes.slim(REAL_POD)], node_labels={}, filters=filters) == \
        node.discovered([REAL_POD], node_labels={}, filters=filters)
    assert node.default_container(kubernetes.slim(REAL_POD)) == "app"


def test_slim_tolerates_odd_shapes():
    assert kubernetes.slim({}) == {"metadata": {}}
    odd = {"metadata": "x", "spec": {"containers": "nope"}, "status": {"containerStatuses": [1]}}
    assert kubernetes.slim(odd) == {"metadata": {}, "spec": {"containers": []},
                                    "status": {"containerStatuses": []}}
