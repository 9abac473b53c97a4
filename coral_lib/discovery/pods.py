"""Pure: one pod (a plain dict as the API server sends it) -> candidate services.

One candidate per declared container port. Component name, first found:
`coral.io/service-name` (annotation or label), `app.kubernetes.io/name`, `app`, then the
owning workload's name (a ReplicaSet's pod-template hash stripped, so a Deployment's pods
share the Deployment's name), then the pod name. The component name here is the
discovered default: the override annotations are applied later, as their own layer
(overrides.annotation_layer), so provenance can say which source won.

Health endpoint: the readiness probe's httpGet path when it probes the same port (or the
pod has one probe), else empty. Service type: the port's name (`http`, `grpc`, ...), else
its protocol in lower case (`tcp`). Pods in phase Succeeded or Failed, and pods being
deleted, have no services.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from coral_lib import service

SERVICE_NAME = "coral.io/service-name"
NAME_LABELS = ("app.kubernetes.io/name", "app")
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})
# kube-controller-manager appends a 1-10 char hash of [bcdfghjklmnpqrstvwxz2456789].
_RS_HASH = re.compile(r"^(?P<base>.+)-[bcdfghjklmnpqrstvwxz2456789]{1,10}$")

Pod = Mapping[str, Any]


def pod_key(pod: Pod) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def is_live(pod: Pod) -> bool:
    """Whether the pod can have services: not finished and not being deleted."""
    phase = (pod.get("status") or {}).get("phase", "")
    return phase not in FINISHED_PHASES and not (pod.get("metadata") or {}).get("deletionTimestamp")


def owner_name(pod: Pod) -> str:
    """The controlling workload's name; a ReplicaSet's template hash suffix is stripped."""
    meta = pod.get("metadata") or {}
    refs = [r for r in meta.get("ownerReferences") or [] if isinstance(r, dict)]
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if not ref or not ref.get("name"):
        return ""
    name = str(ref["name"])
    template_hash = (meta.get("labels") or {}).get("pod-template-hash", "")
    if ref.get("kind") == "ReplicaSet":
        if template_hash and name.endswith(f"-{template_hash}"):
            return name[: -len(template_hash) - 1]
        match = _RS_HASH.match(name)
        return match.group("base") if match else name
    return name


def component_name(pod: Pod) -> str:
    """The discovered default name (a `coral.io/service-name` label counts as discovered;
    the annotation of that name is an override layer, see the module docstring)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    for value in (labels.get(SERVICE_NAME), *(labels.get(k) for k in NAME_LABELS)):
        if value:
            return str(value)
    return owner_name(pod) or str(meta.get("name", ""))


def readiness_path(container: Mapping[str, Any], *, port: Mapping[str, Any]) -> str:
    """The readiness probe's httpGet path when it probes this port (by number or name)."""
    probe = (container.get("readinessProbe") or {}).get("httpGet") or {}
    target = probe.get("port")
    if not probe or target in (None, port.get("containerPort"), port.get("name")):
        return str(probe.get("path", "")) if probe else ""
    return ""


def service_type(port: Mapping[str, Any]) -> str:
    """The port's name (`http`, `grpc`), else its protocol in lower case (`tcp`)."""
    return str(port.get("name") or port.get("protocol") or "TCP").lower()


def candidates(pod: Pod, *, node_labels: Mapping[str, str] | None = None
               ) -> list[service.ServiceInfo]:
    """Candidate services of one pod: one per container port; none when not live."""
    if not is_live(pod):
        return []
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    name = component_name(pod)
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    out = []
    for container in spec.get("containers") or []:
        for port in container.get("ports") or []:
            number = port.get("containerPort")
            if not isinstance(number, int) or not 0 < number < 65536:
                continue
            out.append(service.ServiceInfo(
                component_name=name, port=number, service_type=service_type(port),
                health_endpoint=readiness_path(container, port=port), labels=labels,
                provenance=service.Provenance.DISCOVERED, node_name=spec.get("nodeName", ""),
                node_labels=dict(node_labels or {}), namespace=meta.get("namespace", ""),
                pod_name=meta.get("name", ""), container_name=container.get("name", ""),
            ))
    return out
