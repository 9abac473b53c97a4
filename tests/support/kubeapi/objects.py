"""Metadata rules for writes: defaults on create, what an update may change, validation."""

from __future__ import annotations

import datetime
import json
import re

from tests.support.kubeapi import errors, resources

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_KEEP_META = ("uid", "creationTimestamp", "generation", "namespace", "name",
              "deletionTimestamp", "managedFields")


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _copy(obj: dict) -> dict:
    return json.loads(json.dumps(obj))


def check_kind(rt: resources.ResourceType, body: dict) -> None:
    """The URL's kind is the default, as the real decoder does; a different one is an error."""
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if (kind or rt.kind) != rt.kind or (api_version or rt.api_version) != rt.api_version:
        raise errors.bad_request(
            f"the body is {api_version}/{kind} but the URL is for {rt.api_version}/{rt.kind}")
    body["kind"], body["apiVersion"] = rt.kind, rt.api_version


def check_identity(rt: resources.ResourceType, ns: str, name: str, body: dict) -> None:
    check_kind(rt, body)
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    if meta.get("name") != name:
        raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not match "
                                 f"the name on the URL ({name})")
    if rt.namespaced and meta.get("namespace") not in (None, "", ns):
        raise errors.bad_request("the namespace of the provided object does not match the "
                                 "namespace sent on the request")


def prepare_create(rt: resources.ResourceType, ns: str, body: object, *,
                   field_manager: str | None) -> dict:
    if not isinstance(body, dict):
        raise errors.bad_request("object must be a JSON object")
    obj = _copy(body)
    check_kind(rt, obj)
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    if rt.namespaced:
        if meta.get("namespace") not in (None, "", ns):
            raise errors.bad_request("the namespace of the provided object does not match "
                                     "the namespace sent on the request")
        meta["namespace"] = ns
    else:
        meta.pop("namespace", None)
    if not meta.get("name") and not meta.get("generateName"):
        raise errors.invalid(rt.kind, "", "metadata.name: Required value: name or "
                             "generateName is required")
    for key in ("resourceVersion", "uid", "deletionTimestamp", "selfLink"):
        meta.pop(key, None)
    meta["creationTimestamp"] = now()
    if rt.has_generation:
        meta["generation"] = 1
    if field_manager:
        meta["managedFields"] = [_managed(rt, field_manager, "Update")]
    _DEFAULTS.get(rt.plural, lambda o: None)(obj)
    if rt.has_status:
        obj.setdefault("status", {})
    return obj


def _managed(rt: resources.ResourceType, manager: str, operation: str) -> dict:
    return {"manager": manager, "operation": operation, "apiVersion": rt.api_version,
            "time": now(), "fieldsType": "FieldsV1", "fieldsV1": {}}


def _container_defaults(c: object) -> None:
    if not isinstance(c, dict):
        return
    image = str(c.get("image", ""))
    latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
    c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def _pod_defaults(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("serviceAccountName", "default")
        for field in ("containers", "initContainers"):
            if isinstance(spec.get(field), list):
                for c in spec[field]:
                    _container_defaults(c)
    status = obj.setdefault("status", {})
    if isinstance(status, dict):
        status.setdefault("phase", "Pending")


def _service_defaults(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "port" in port:
                port.setdefault("targetPort", port["port"])


def _namespace_defaults(obj: dict) -> None:
    meta = obj["metadata"]
    if meta.get("name"):
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    obj.setdefault("spec", {"finalizers": ["kubernetes"]})
    obj["status"] = {"phase": "Active"}


def _deployment_defaults(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {
            "maxUnavailable": "25%", "maxSurge": "25%"}})


def _daemonset_defaults(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {
            "maxUnavailable": 1, "maxSurge": 0}})


# Defaulting as the real API server does on every write (a subset).
_DEFAULTS = {"pods": _pod_defaults, "namespaces": _namespace_defaults,
             "deployments": _deployment_defaults, "daemonsets": _daemonset_defaults,
             "services": _service_defaults}


def apply_defaults(rt: resources.ResourceType, obj: dict) -> None:
    """Defaulting that the real server repeats on every write (also after admission)."""
    if rt.plural in ("pods", "deployments", "daemonsets", "services"):
        _DEFAULTS[rt.plural](obj)


def validate(rt: resources.ResourceType, obj: dict) -> None:
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    if name and (len(name) > 253 or not _SUBDOMAIN.match(name)):
        raise errors.invalid(rt.kind, name, f"metadata.name: Invalid value: {name!r}: a "
                             "lowercase RFC 1123 subdomain must consist of lower case "
                             "alphanumeric characters, '-' or '.'")
    for field in ("labels", "annotations"):
        values = meta.get(field) or {}
        if not isinstance(values, dict) or not all(
                isinstance(v, str) for v in values.values()):
            raise errors.invalid(rt.kind, name, f"metadata.{field}: Invalid value: values "
                                 "must be strings")
    if rt.plural == "pods":
        _validate_pod(name, obj)
    elif rt.plural == "podtemplates":
        _validate_pod(name, obj.get("template") or {}, kind="PodTemplate", at="template.spec")
    elif rt.plural in ("deployments", "daemonsets", "replicasets"):
        _validate_workload(rt.kind, name, obj)


def _validate_pod(name: str, obj: dict, *, kind: str = "Pod", at: str = "spec") -> None:
    spec = obj.get("spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(containers, list) or not containers:
        raise errors.invalid(kind, name, f"{at}.containers: Required value")
    for i, c in enumerate(containers):
        if not isinstance(c, dict) or not c.get("name") or not c.get("image"):
            raise errors.invalid(kind, name, f"{at}.containers[{i}]: Required value: "
                                 "name and image are required")


def _validate_workload(kind: str, name: str, obj: dict) -> None:
    """apps/v1 validation kube-apiserver does: the selector's matchLabels are the template's
    labels, and the pod template has named containers with images. (A missing selector is
    FIXTURE leniency: older fixture tests create workloads without one.)"""
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    match = (spec.get("selector") or {}).get("matchLabels") or {}
    tlabels = (template.get("metadata") or {}).get("labels") or {}
    if any(tlabels.get(k) != v for k, v in match.items()):
        raise errors.invalid(kind, name, "spec.template.metadata.labels: Invalid value: "
                             f"{tlabels!r}: `selector` does not match template `labels`")
    _validate_pod(name, template, kind=kind, at="spec.template.spec")


def merge_update(rt: resources.ResourceType, current: dict, new: dict, *,
                 subresource: str | None) -> dict:
    """The object an update would store: identity from `current`, status per subresource."""
    if subresource == "status":
        out = _copy(current)
        out["status"] = _copy(new.get("status") or {})
        return out
    out = _copy(new)
    meta = out.get("metadata")
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    cur_meta = current["metadata"]
    for key in _KEEP_META:
        if key in cur_meta:
            meta[key] = cur_meta[key]
        else:
            meta.pop(key, None)
    meta["resourceVersion"] = cur_meta["resourceVersion"]
    out["apiVersion"], out["kind"] = current["apiVersion"], current["kind"]
    if rt.has_status:
        out["status"] = current.get("status", {})
    apply_defaults(rt, out)
    if rt.plural == "services":
        for key in ("clusterIP", "clusterIPs"):
            if key in (current.get("spec") or {}) and isinstance(out.get("spec"), dict):
                out["spec"].setdefault(key, current["spec"][key])
    if rt.plural == "namespaces":
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    return out


def _strip(obj: dict) -> dict:
    meta = {k: v for k, v in obj.get("metadata", {}).items()
            if k not in ("resourceVersion", "managedFields")}
    return {**obj, "metadata": meta}


def same(a: dict, b: dict) -> bool:
    return _strip(a) == _strip(b)


def _spec_part(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def finish_update(rt: resources.ResourceType, current: dict, new: dict, *,
                  field_manager: str | None, operation: str) -> None:
    meta = new["metadata"]
    if rt.has_generation and _spec_part(current) != _spec_part(new):
        meta["generation"] = int(current["metadata"].get("generation") or 1) + 1
    if field_manager:
        managed = [m for m in meta.get("managedFields") or []
                   if (m.get("manager"), m.get("operation")) != (field_manager, operation)]
        meta["managedFields"] = managed + [_managed(rt, field_manager, operation)]


def check_preconditions(rt: resources.ResourceType, current: dict, pre: dict) -> None:
    meta = current["metadata"]
    for field in ("uid", "resourceVersion"):
        want = pre.get(field)
        if want and want != meta.get(field):
            raise errors.ApiError(409, f"Precondition failed: {field} in precondition: {want}, "
                                  f"{field} in object meta: {meta.get(field)}",
                                  details={"name": meta["name"], "kind": rt.plural})


def deleted_copy(current: dict) -> dict:
    out = _copy(current)
    out["metadata"]["deletionTimestamp"] = now()
    out["metadata"]["deletionGracePeriodSeconds"] = 0
    return out
