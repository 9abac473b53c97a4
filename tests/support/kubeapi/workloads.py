"""DaemonSet, Deployment and ReplicaSet controllers that create real pods.

The inline controller (controller.py) writes a fully rolled-out status at once and creates
no pods. With pod runners (tests/support/podrunner.py) on the nodes, `Workloads(server)`
runs the real loop instead: a DaemonSet gets one pod per eligible node (`nodeSelector`),
a ReplicaSet `spec.replicas` pods, each created through the API's admission chain
(mutating webhooks, Pod Security), so a refusal shows as a `FailedCreate` Event as the
real controllers record it. Status (ready, updated, available, unavailable) is computed
from the pods' Ready condition that the runners write, so `kubectl rollout status`,
`kubernetes.core.k8s wait` and gates see real progress.

Rollouts: a DaemonSet replaces pods of an older template (`controller-revision-hash`) at
most `maxUnavailable` (default 1) unavailable at a time, or only when deleted (OnDelete);
a Deployment's new ReplicaSet is scaled to `spec.replicas` at once (maxSurge 100%) and the
old ones down as new pods become ready, so a new template whose pods never become ready
leaves the old pods serving and, after `progressDeadlineSeconds`, reports Progressing=False
ProgressDeadlineExceeded. FIXTURE BEHAVIOUR: no minReadySeconds, maxSurge/maxUnavailable
of Deployments, pod deletion cost or scheduler: pods without a node are bound round-robin.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from tests.support.kubeapi import controller, errors, objects, selectors, serviceaccounts

log = logging.getLogger(__name__)
_REVISION = "deployment.kubernetes.io/revision"


def is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def is_active(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def max_unavailable(ds: dict, desired: int) -> int:
    """RollingUpdate maxUnavailable: an int or a percentage (rounded up, at least 1)."""
    value = (((ds.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate")
             or {}).get("maxUnavailable", 1)
    if isinstance(value, str) and value.endswith("%"):
        value = math.ceil(desired * int(value[:-1]) / 100)
    return max(1, int(value))


def daemonset_status(ds: dict, pods: list[dict], nodes: list[str], revision: str) -> dict:
    """What the DaemonSet controller reports, from the pods it owns (pure)."""
    on_nodes = [p for p in pods if p["spec"].get("nodeName") in nodes]
    scheduled = {p["spec"]["nodeName"] for p in on_nodes}
    ready = sum(1 for p in on_nodes if is_ready(p))
    updated = sum(1 for p in on_nodes
                  if p["metadata"].get("labels", {}).get("controller-revision-hash") == revision)
    return {"observedGeneration": ds["metadata"].get("generation", 1),
            "desiredNumberScheduled": len(nodes), "currentNumberScheduled": len(scheduled),
            "numberMisscheduled": len({p["spec"].get("nodeName") for p in pods} - set(nodes)),
            "numberReady": ready, "updatedNumberScheduled": updated,
            "numberAvailable": ready, "numberUnavailable": len(nodes) - ready}


def replicaset_status(rs: dict, pods: list[dict]) -> dict:
    active = [p for p in pods if is_active(p)]
    ready = sum(1 for p in active if is_ready(p))
    return {"observedGeneration": rs["metadata"].get("generation", 1),
            "replicas": len(active), "fullyLabeledReplicas": len(active),
            "readyReplicas": ready, "availableReplicas": ready}


def deployment_status(deploy: dict, new: list[dict], old: list[dict], *,
                      deadline_passed: bool) -> dict:
    """Deployment status from its new and old ReplicaSets' pods (pure)."""
    desired = int((deploy.get("spec") or {}).get("replicas", 1))
    everyone = [p for p in new + old if is_active(p)]
    available = sum(1 for p in everyone if is_ready(p))
    new_ready = sum(1 for p in new if is_active(p) and is_ready(p))
    updated = sum(1 for p in new if is_active(p))
    done = new_ready >= desired and updated == desired and len(everyone) == desired
    ts = objects.now()
    if done:
        progressing = ("True", "NewReplicaSetAvailable", "ReplicaSet has successfully progressed.")
    elif deadline_passed:
        progressing = ("False", "ProgressDeadlineExceeded",
                       "ReplicaSet has timed out progressing.")
    else:
        progressing = ("True", "ReplicaSetUpdated", "ReplicaSet is progressing.")
    min_available = desired - math.floor(desired * 0.25)  # default maxUnavailable 25%
    avail = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.") \
        if available >= min_available else \
        ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    conditions = [{"type": t, "status": s, "reason": r, "message": m, "lastUpdateTime": ts,
                   "lastTransitionTime": ts}
                  for t, (s, r, m) in (("Available", avail), ("Progressing", progressing))]
    status = {"observedGeneration": deploy["metadata"].get("generation", 1),
              "replicas": len(everyone), "updatedReplicas": updated,
              "readyReplicas": available, "availableReplicas": available,
              "conditions": conditions}
    if desired - available > 0:
        status["unavailableReplicas"] = desired - available
    return status


def _same_status(a: dict | None, b: dict) -> bool:
    """Equal but for condition timestamps (so an unchanged status is not rewritten)."""
    def strip(doc):
        doc = dict(doc or {})
        doc["conditions"] = [{k: v for k, v in c.items() if not k.endswith("Time")}
                             for c in doc.get("conditions") or []]
        return doc
    return strip(a) == strip(b)


class Workloads:
    """The loop; `start()` takes over workload status from the inline controller."""

    def __init__(self, server, *, interval: float = 0.2) -> None:
        self.server = server
        self.store = server.store
        self.interval = interval
        self.failures: list[tuple[str, str, str]] = []  # (kind, namespace/name, message)
        self._reported: set[tuple[str, str]] = set()
        self._progress_since: dict[str, tuple[str, float]] = {}  # deploy uid -> (rs, since)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="workloads")

    def __enter__(self) -> Workloads:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.store.controller.live_workloads = True
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.store.controller.live_workloads = False

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile()
            except Exception:  # noqa: BLE001 - the loop goes on; the log says what broke
                log.exception("workload controllers")
            self._stop.wait(self.interval)

    def reconcile(self) -> None:
        if self.store.service_accounts:
            serviceaccounts.ensure_namespace_defaults(self.store, self.server.ca_pem)
        for ds in self.store.list("daemonsets"):
            self._daemonset(ds)
        for deploy in self.store.list("deployments"):
            self._deployment(deploy)
        for rs in self.store.list("replicasets"):
            self._replicaset(rs)

    # ---- helpers ---------------------------------------------------------------------------
    def _owned_pods(self, owner: dict) -> list[dict]:
        uid = owner["metadata"]["uid"]
        return [p for p in self.store.list("pods", namespace=owner["metadata"]["namespace"])
                if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])]

    def _create_pod(self, owner: dict, template: dict, *, labels: dict, node: str = "") -> None:
        meta = owner["metadata"]
        spec = dict(template.get("spec") or {})
        if node:
            spec["nodeName"] = node
        tmeta = template.get("metadata") or {}
        pod = {"apiVersion": "v1", "kind": "Pod", "spec": spec, "metadata": {
            "generateName": f"{meta['name']}-", "namespace": meta["namespace"],
            "labels": {**(tmeta.get("labels") or {}), **labels},
            "annotations": dict(tmeta.get("annotations") or {}),
            "ownerReferences": [controller._owner_ref(owner)]}}
        try:
            self.store.create(pod, namespace=meta["namespace"])
        except errors.ApiError as exc:
            self._failed_create(owner, exc.message)

    def _failed_create(self, owner: dict, message: str) -> None:
        meta = owner["metadata"]
        key = (meta["uid"], message)
        self.failures.append((owner["kind"], f"{meta['namespace']}/{meta['name']}", message))
        if key in self._reported:
            return
        self._reported.add(key)
        log.info("%s %s/%s: FailedCreate: %s", owner["kind"], meta["namespace"], meta["name"],
                 message)
        ts = objects.now()
        self.store.create({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"kind": owner["kind"], "apiVersion": owner["apiVersion"],
                               "name": meta["name"], "namespace": meta["namespace"],
                               "uid": meta["uid"]},
            "reason": "FailedCreate", "message": f"Error creating: {message}", "type": "Warning",
            "source": {"component": f"{owner['kind'].lower()}-controller"},
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1},
            namespace=meta["namespace"])

    def _write_status(self, plural: str, obj: dict, status: dict) -> None:
        if _same_status(obj.get("status"), status):
            return
        try:
            self.store.patch(plural, obj["metadata"]["name"], {"status": status},
                             namespace=obj["metadata"]["namespace"], subresource="status")
        except errors.ApiError:
            pass  # deleted meanwhile

    def _delete(self, pod: dict) -> None:
        try:
            self.store.delete("pods", pod["metadata"]["name"],
                              namespace=pod["metadata"]["namespace"])
        except errors.ApiError:
            pass

    # ---- DaemonSet -------------------------------------------------------------------------
    def _daemonset(self, ds: dict) -> None:
        spec = ds.get("spec") or {}
        template = spec.get("template") or {}
        revision = controller.template_hash(template)
        want = (template.get("spec") or {}).get("nodeSelector") or {}
        nodes = sorted(n["metadata"]["name"] for n in self.store.list("nodes")
                       if selectors.match_label_selector({"matchLabels": want},
                                                         n["metadata"].get("labels")))
        pods = self._owned_pods(ds)
        by_node: dict[str, list[dict]] = {}
        for pod in pods:
            by_node.setdefault(pod["spec"].get("nodeName", ""), []).append(pod)
        for node in nodes:
            if not by_node.get(node):
                self._create_pod(ds, template, node=node,
                                 labels={"controller-revision-hash": revision})
        for node, extra in by_node.items():
            if node not in nodes:
                for pod in extra:
                    self._delete(pod)
        strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
        if strategy == "RollingUpdate":
            old = [p for n in nodes for p in by_node.get(n, [])
                   if p["metadata"].get("labels", {}).get("controller-revision-hash")
                   != revision]
            unavailable = sum(1 for n in nodes
                              if not any(is_ready(p) for p in by_node.get(n, [])))
            budget = max_unavailable(ds, len(nodes)) - unavailable
            # Old pods that are not ready go first: replacing them costs no availability.
            for pod in sorted(old, key=is_ready):
                if not is_ready(pod):
                    self._delete(pod)
                elif budget > 0:
                    self._delete(pod)
                    budget -= 1
        self._write_status("daemonsets", ds, daemonset_status(ds, pods, nodes, revision))

    # ---- ReplicaSet ------------------------------------------------------------------------
    def _replicaset(self, rs: dict) -> None:
        spec = rs.get("spec") or {}
        want = int(spec.get("replicas", 1))
        pods = self._owned_pods(rs)
        active = [p for p in pods if is_active(p)]
        for _ in range(want - len(active)):
            self._create_pod(rs, spec.get("template") or {}, labels={})
        if len(active) > want:
            # Not-ready pods go first, then the newest (the controller's ranking, simplified).
            ranked = sorted(active, key=lambda p: (is_ready(p),
                                                   p["metadata"].get("creationTimestamp", "")),
                            reverse=False)
            for pod in ranked[:len(active) - want]:
                self._delete(pod)
        self._write_status("replicasets", rs, replicaset_status(rs, pods))

    # ---- Deployment ------------------------------------------------------------------------
    def _deployment(self, deploy: dict) -> None:
        spec = deploy.get("spec") or {}
        desired = int(spec.get("replicas", 1))
        name = f"{deploy['metadata']['name']}-{controller.template_hash(spec.get('template'))}"
        owned = [rs for rs in self.store.list("replicasets",
                                              namespace=deploy["metadata"]["namespace"])
                 if any(r.get("uid") == deploy["metadata"]["uid"]
                        for r in rs["metadata"].get("ownerReferences") or [])]
        new = next((rs for rs in owned if rs["metadata"]["name"] == name), None)
        if new is None:
            return  # the inline controller creates it with the Deployment's write
        if int(new["spec"].get("replicas", 0)) != desired:
            self._scale(new, desired)
        revision = new["metadata"].get("annotations", {}).get(_REVISION)
        if (deploy["metadata"].get("annotations") or {}).get(_REVISION) != revision:
            # The deployment controller stamps the revision (kubectl rollout undo reads it).
            self.store.patch("deployments", deploy["metadata"]["name"],
                             {"metadata": {"annotations": {_REVISION: revision}}},
                             namespace=deploy["metadata"]["namespace"])
        new_pods = self._owned_pods(new)
        new_ready = sum(1 for p in new_pods if is_active(p) and is_ready(p))
        keep_old = max(0, desired - new_ready)
        old_pods: list[dict] = []
        newest_first = sorted((rs for rs in owned if rs is not new), key=lambda rs: int(
            rs["metadata"].get("annotations", {}).get(_REVISION, 0)),
            reverse=True)
        for rs in newest_first:
            current = int(rs["spec"].get("replicas", 0))
            target = min(current, keep_old)
            keep_old -= target
            if target != current:
                self._scale(rs, target)
            old_pods.extend(self._owned_pods(rs))
        uid = deploy["metadata"]["uid"]
        if self._progress_since.get(uid, ("",))[0] != name:
            self._progress_since[uid] = (name, time.monotonic())
        deadline = int(spec.get("progressDeadlineSeconds", 600))
        passed = time.monotonic() - self._progress_since[uid][1] > deadline
        self._write_status("deployments", deploy,
                           deployment_status(deploy, new_pods, old_pods, deadline_passed=passed))

    def _scale(self, rs: dict, replicas: int) -> None:
        try:
            self.store.patch("replicasets", rs["metadata"]["name"],
                             {"spec": {"replicas": replicas}},
                             namespace=rs["metadata"]["namespace"])
        except errors.ApiError:
            pass
