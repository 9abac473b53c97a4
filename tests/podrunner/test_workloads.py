"""Issue 14 §3 "Controllers: DaemonSet (one pod per node, through the admission chain),
Deployment / ReplicaSet; status (ready, updated, available) computed from real pod
readiness, so rollout waits and the canary gate see real progress" — with pods running as
busybox containers on two fixture nodes."""

from __future__ import annotations

from tests.podrunner.conftest import BUSYBOX, NODES, exec_in, is_ready, kubectl, wait_for
from tests.support.kubeapi import podsecurity

READY_FILE_PROBE = {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1,
                    "failureThreshold": 1}


def template(labels: dict, *, script: str = "touch /tmp/ready; exec sleep 100000",
             **spec) -> dict:
    return {"metadata": {"labels": labels}, "spec": {"containers": [{
        "name": "c", "image": BUSYBOX, "command": ["sh", "-c", script],
        "readinessProbe": READY_FILE_PROBE}], **spec}}


def daemonset(name: str, **tmpl) -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": template({"app": name}, **tmpl)}}


def deployment(name: str, replicas: int, **tmpl) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": 4,
                     "selector": {"matchLabels": {"app": name}},
                     "template": template({"app": name}, **tmpl)}}


def status(cluster, plural, ns, name):
    return cluster.store.get(plural, name, namespace=ns).get("status") or {}


def pods_of(cluster, ns, app):
    return cluster.store.list("pods", namespace=ns, label_selector=f"app={app}")


def test_daemonset_one_pod_per_node_status_from_real_readiness(cluster, ns):
    cluster.store.create(daemonset("agent"), namespace=ns)
    wait_for(lambda: status(cluster, "daemonsets", ns, "agent").get("numberReady") == 2,
             what="both agents ready")
    st = status(cluster, "daemonsets", ns, "agent")
    assert (st["desiredNumberScheduled"], st["currentNumberScheduled"],
            st["updatedNumberScheduled"], st["numberAvailable"]) == (2, 2, 2, 2)
    pods = pods_of(cluster, ns, "agent")
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(NODES)
    assert all(p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet" for p in pods)
    # Readiness comes from the containers: one pod turns unready, the DaemonSet sees it.
    victim = pods[0]["metadata"]["name"]
    exec_in(cluster, ns, victim, "c", ["rm", "/tmp/ready"])
    wait_for(lambda: status(cluster, "daemonsets", ns, "agent").get("numberReady") == 1,
             what="one agent unready")
    assert status(cluster, "daemonsets", ns, "agent")["numberUnavailable"] == 1
    exec_in(cluster, ns, victim, "c", ["touch", "/tmp/ready"])
    wait_for(lambda: status(cluster, "daemonsets", ns, "agent").get("numberReady") == 2,
             what="ready again")
    # A deleted pod is recreated on its node.
    cluster.store.delete("pods", victim, namespace=ns)
    wait_for(lambda: len(pods_of(cluster, ns, "agent")) == 2
             and victim not in {p["metadata"]["name"] for p in pods_of(cluster, ns, "agent")}
             and status(cluster, "daemonsets", ns, "agent").get("numberReady") == 2,
             what="replacement pod ready")


def test_daemonset_pods_go_through_admission_pod_security_refusal(cluster, ns):
    """The DaemonSet's pods are created through the admission chain: a `baseline`
    namespace refuses hostPID pods, and the controller records FailedCreate."""
    cluster.store.patch("namespaces", ns, {"metadata": {"labels": {
        podsecurity.LABEL: "baseline"}}})
    cluster.store.create(daemonset("hostpid", hostPID=True), namespace=ns)
    event = wait_for(lambda: next((e for e in cluster.store.list("events", namespace=ns)
                                   if e.get("reason") == "FailedCreate"), None),
                     what="FailedCreate event")
    assert event["message"].startswith('Error creating: pods "hostpid-')
    assert 'violates PodSecurity "baseline:latest": host namespaces (hostPID=true)' in \
        event["message"]
    assert pods_of(cluster, ns, "hostpid") == []
    st = status(cluster, "daemonsets", ns, "hostpid")
    assert st["desiredNumberScheduled"] == 2 and st["numberReady"] == 0
    out = kubectl(cluster, "rollout", "status", "-n", ns, "daemonset/hostpid", "--timeout=1s")
    assert out.returncode != 0


def test_daemonset_rolling_update_and_kubectl_rollout_status(cluster, ns):
    cluster.store.create(daemonset("roll"), namespace=ns)
    out = kubectl(cluster, "rollout", "status", "-n", ns, "daemonset/roll", "--timeout=60s")
    assert out.returncode == 0, out.stderr
    assert 'daemon set "roll" successfully rolled out' in out.stdout
    before = {p["metadata"]["name"] for p in pods_of(cluster, ns, "roll")}
    cluster.store.patch("daemonsets", "roll", {"spec": {"template": {"metadata": {
        "annotations": {"rev": "2"}}}}}, namespace=ns)
    out = kubectl(cluster, "rollout", "status", "-n", ns, "daemonset/roll", "--timeout=60s")
    assert out.returncode == 0, out.stderr
    after = pods_of(cluster, ns, "roll")
    assert len(after) == 2 and not before & {p["metadata"]["name"] for p in after}
    assert all(p["metadata"]["annotations"].get("rev") == "2" for p in after)


def test_deployment_replicaset_rollout_sees_real_progress(cluster, ns):
    cluster.store.create(deployment("web", 2), namespace=ns)
    out = kubectl(cluster, "rollout", "status", "-n", ns, "deployment/web", "--timeout=60s")
    assert out.returncode == 0, out.stderr
    st = status(cluster, "deployments", ns, "web")
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"],
            st["availableReplicas"]) == (2, 2, 2, 2)
    old_pods = {p["metadata"]["name"] for p in pods_of(cluster, ns, "web")}
    # A new template whose pods never become ready: the old pods keep serving, the
    # rollout reports the missed deadline, and `kubectl rollout status` fails.
    cluster.store.patch("deployments", "web", {"spec": {"template": {"spec": {"containers": [{
        "name": "c", "image": BUSYBOX, "command": ["sleep", "100000"],
        "readinessProbe": READY_FILE_PROBE}]}}}}, namespace=ns)
    out = kubectl(cluster, "rollout", "status", "-n", ns, "deployment/web", "--timeout=30s")
    assert out.returncode != 0
    assert 'deployment "web" exceeded its progress deadline' in out.stderr
    st = status(cluster, "deployments", ns, "web")
    assert st["updatedReplicas"] == 2 and st["availableReplicas"] == 2 and st["replicas"] == 4
    ready = {p["metadata"]["name"] for p in pods_of(cluster, ns, "web")
             if is_ready_pod(p)}
    assert ready == old_pods
    # Undo: back to the first template, the unready pods go away.
    out = kubectl(cluster, "rollout", "undo", "-n", ns, "deployment/web")
    assert out.returncode == 0, out.stderr
    out = kubectl(cluster, "rollout", "status", "-n", ns, "deployment/web", "--timeout=60s")
    assert out.returncode == 0, out.stderr
    wait_for(lambda: len(pods_of(cluster, ns, "web")) == 2, what="unready pods removed")
    # Scaling goes through the ReplicaSet to real pods.
    cluster.store.patch("deployments", "web", {"spec": {"replicas": 3}}, namespace=ns)
    wait_for(lambda: status(cluster, "deployments", ns, "web").get("availableReplicas") == 3,
             what="scaled to 3")
    assert all(is_ready(cluster, ns, p["metadata"]["name"]) for p in pods_of(cluster, ns, "web"))


def is_ready_pod(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])
