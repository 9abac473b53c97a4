"""A tiny controller, so deploy tooling has something to wait for.

FIXTURE BEHAVIOUR, not Kubernetes: writes happen inline with the triggering request, under
the store lock, with no real kubelet or scheduler behind them.
- Pods created without `spec.nodeName` are bound to the fixture's nodes round-robin; a pod
  with a node and no status beyond `Pending` is written as Running and Ready (podIP from
  10.244.0.0/16, which is never contacted). Set `run_pods = False` to keep them Pending.
- Deployments and DaemonSets get a status as if fully rolled out in the same write:
  observedGeneration = generation, every replica / every matching node ready and updated,
  condition Available=True. DaemonSet counts are the nodes matching the template's
  nodeSelector, recomputed when nodes come and go.
- A DaemonSet gets one ControllerRevision per template (name `<ds>-<hash>`, revision
  numbers increasing; going back to an earlier template re-numbers that revision, as the
  real controller does), so `kubectl rollout undo` can find the previous revision.
- A Deployment gets one ReplicaSet per template (`<deploy>-<hash>`, label
  pod-template-hash); older ones are scaled to 0. No pods are created for either.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid

from tests.support.kubeapi import objects, resources, selectors

OWNER_KINDS = {"Deployment", "ReplicaSet", "DaemonSet"}
OWNED_TYPES = [resources.lookup(n) for n in ("replicasets", "controllerrevisions", "pods")]
_CR = resources.lookup("controllerrevisions")
_RS = resources.lookup("replicasets")
_DS = resources.lookup("daemonsets")
_LIVE = ("deployments", "daemonsets", "replicasets")


def template_hash(template: object) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return digest[:10]


def _owner_ref(obj: dict) -> dict:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


class Controller:
    def __init__(self, store):
        self.store = store
        self.run_pods = True
        # Nodes whose pods a real runner (tests/support/podrunner.py) runs: only bind them.
        self.kubelet_nodes: set[str] = set()
        # Set by workloads.Workloads: real controllers own workload status and scaling.
        self.live_workloads = False
        self._ips = itertools.count(2)
        self._rr = itertools.count()

    # ---- hooks called by the store, lock held -----------------------------------------
    def before_create(self, rt: resources.ResourceType, obj: dict) -> None:
        if rt.plural == "pods" and self.run_pods:
            self._run_pod(obj)
        elif self.live_workloads and rt.plural in _LIVE:
            obj["status"] = {}  # the API server drops status on create; controllers fill it
        elif rt.plural == "deployments":
            obj["status"] = self._deployment_status(obj)
        elif rt.plural == "daemonsets":
            obj["status"] = self._daemonset_status(obj)
        elif rt.plural == "services":
            spec = obj.get("spec") or {}
            if spec.get("type") != "ExternalName" and not spec.get("clusterIP"):
                n = next(self._ips)
                spec["clusterIP"] = f"10.96.{n // 250 % 250}.{n % 250 + 2}"
                spec["clusterIPs"] = [spec["clusterIP"]]
        elif rt.plural == "replicasets":
            obj["status"] = self._replicaset_status(obj)

    def before_update(self, rt: resources.ResourceType, new: dict, old: dict) -> None:
        if self.live_workloads:
            return
        if new["metadata"].get("generation") == old["metadata"].get("generation"):
            return
        status_fn = {"deployments": self._deployment_status, "replicasets":
                     self._replicaset_status, "daemonsets": self._daemonset_status}.get(rt.plural)
        if status_fn is not None:
            new["status"] = status_fn(new)

    def after_commit(self, rt: resources.ResourceType, ev) -> None:
        if ev.type == "DELETED":
            if rt.plural == "nodes" and not self.live_workloads:
                self._refresh_daemonsets()
            return
        if rt.plural == "daemonsets":
            self._ensure_revision(ev.obj)
        elif rt.plural == "deployments":
            self._ensure_replicaset(ev.obj)
        elif rt.plural == "nodes" and ev.type == "ADDED" and not self.live_workloads:
            self._refresh_daemonsets()

    # ---- pods ---------------------------------------------------------------------------
    def _run_pod(self, pod: dict) -> None:
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        if not spec.get("nodeName"):
            nodes = sorted(n for _ns, n in self.store._objects["nodes"])
            if not nodes:
                return
            spec["nodeName"] = nodes[next(self._rr) % len(nodes)]
        if spec["nodeName"] in self.kubelet_nodes:
            pod["status"] = {**status, "phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True",
                 "lastTransitionTime": pod["metadata"]["creationTimestamp"]}]}
            return
        if status.get("phase") not in (None, "Pending") or status.get("containerStatuses"):
            return
        n = next(self._ips)
        ts = pod["metadata"]["creationTimestamp"]
        ready = [{"type": t, "status": "True", "lastTransitionTime": ts}
                 for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
        pod["status"] = {
            **status, "phase": "Running", "podIP": f"10.244.{n // 250 % 250}.{n % 250 + 2}",
            "hostIP": "127.0.0.1", "startTime": ts, "conditions": ready, "qosClass": "BestEffort",
            "containerStatuses": [
                {"name": c.get("name"), "image": c.get("image"), "ready": True, "started": True,
                 "restartCount": 0, "imageID": "", "containerID": f"containerd://{n:064x}",
                 "state": {"running": {"startedAt": ts}}}
                for c in spec.get("containers") or [] if isinstance(c, dict)],
        }

    # ---- workload status ------------------------------------------------------------------
    def _deployment_status(self, obj: dict) -> dict:
        n = int((obj.get("spec") or {}).get("replicas", 1) or 0)
        ts = objects.now()
        cond = [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "message": "Deployment has minimum availability.",
                 "lastUpdateTime": ts, "lastTransitionTime": ts},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "message": "ReplicaSet has successfully progressed.",
                 "lastUpdateTime": ts, "lastTransitionTime": ts}]
        return {"observedGeneration": obj["metadata"].get("generation", 1), "replicas": n,
                "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n,
                "conditions": cond}

    def _replicaset_status(self, obj: dict) -> dict:
        n = int((obj.get("spec") or {}).get("replicas", 1) or 0)
        return {"observedGeneration": obj["metadata"].get("generation", 1), "replicas": n,
                "fullyLabeledReplicas": n, "readyReplicas": n, "availableReplicas": n}

    def _daemonset_status(self, obj: dict) -> dict:
        tmpl_spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        want = tmpl_spec.get("nodeSelector") or {}
        n = sum(1 for node, _raw in self.store._objects["nodes"].values()
                if selectors.match_label_selector({"matchLabels": want},
                                                  node["metadata"].get("labels")))
        return {"observedGeneration": obj["metadata"].get("generation", 1),
                "currentNumberScheduled": n, "desiredNumberScheduled": n,
                "numberMisscheduled": 0, "numberReady": n, "updatedNumberScheduled": n,
                "numberAvailable": n}

    def _refresh_daemonsets(self) -> None:
        for (ns, _name), (ds, _raw) in list(self.store._objects[_DS.key].items()):
            status = self._daemonset_status(ds)
            if status != ds.get("status"):
                new = json.loads(json.dumps(ds))
                new["status"] = status
                self.store._commit(_DS, ns, new, "MODIFIED", ds)

    # ---- revisions ------------------------------------------------------------------------
    def _owned(self, rt: resources.ResourceType, owner: dict) -> list[dict]:
        ns, uid = owner["metadata"]["namespace"], owner["metadata"]["uid"]
        return [o for (ons, _n), (o, _r) in self.store._objects[rt.key].items()
                if ons == ns and any(r.get("uid") == uid
                                     for r in o["metadata"].get("ownerReferences") or [])]

    def _ensure_revision(self, ds: dict) -> None:
        template = (ds.get("spec") or {}).get("template") or {}
        h = template_hash(template)
        ns, name = ds["metadata"]["namespace"], f"{ds['metadata']['name']}-{h}"
        owned = self._owned(_CR, ds)
        top = max((int(o.get("revision", 0)) for o in owned), default=0)
        mine = next((o for o in owned if o["metadata"]["name"] == name), None)
        if mine is not None:
            if int(mine.get("revision", 0)) != top:  # back to an older template
                new = json.loads(json.dumps(mine))
                new["revision"] = top + 1
                self.store._commit(_CR, ns, new, "MODIFIED", mine)
            return
        labels = dict(template.get("metadata", {}).get("labels") or {})
        labels["controller-revision-hash"] = h
        cr = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
              "metadata": {"name": name, "namespace": ns, "labels": labels,
                           "uid": _uid(), "creationTimestamp": objects.now(),
                           "ownerReferences": [_owner_ref(ds)]},
              "data": {"spec": {"template": {**template, "$patch": "replace"}}},
              "revision": top + 1}
        self.store._commit(_CR, ns, cr, "ADDED", None)

    def _ensure_replicaset(self, deploy: dict) -> None:
        spec = deploy.get("spec") or {}
        template = spec.get("template") or {}
        h = template_hash(template)
        ns, name = deploy["metadata"]["namespace"], f"{deploy['metadata']['name']}-{h}"
        owned = self._owned(_RS, deploy)
        for rs in owned if not self.live_workloads else ():
            want = spec.get("replicas", 1) if rs["metadata"]["name"] == name else 0
            if rs["spec"].get("replicas") != want:
                new = json.loads(json.dumps(rs))
                new["spec"]["replicas"] = want
                new["status"] = self._replicaset_status(new)
                self.store._commit(_RS, ns, new, "MODIFIED", rs)
        if any(rs["metadata"]["name"] == name for rs in owned):
            return
        top = max((int(rs["metadata"].get("annotations", {}).get(
            "deployment.kubernetes.io/revision", 0)) for rs in owned), default=0)
        labels = {**(template.get("metadata", {}).get("labels") or {}), "pod-template-hash": h}
        selector = json.loads(json.dumps(spec.get("selector") or {}))
        selector.setdefault("matchLabels", {})["pod-template-hash"] = h
        tmpl = json.loads(json.dumps(template))
        tmpl.setdefault("metadata", {})["labels"] = labels
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": name, "namespace": ns, "labels": labels, "uid": _uid(),
                           "creationTimestamp": objects.now(), "generation": 1,
                           "annotations": {"deployment.kubernetes.io/revision": str(top + 1)},
                           "ownerReferences": [_owner_ref(deploy)]},
              "spec": {"replicas": spec.get("replicas", 1), "selector": selector,
                       "template": tmpl}}
        rs["status"] = {} if self.live_workloads else self._replicaset_status(rs)
        self.store._commit(_RS, ns, rs, "ADDED", None)


def _uid() -> str:
    return str(uuid.uuid4())
