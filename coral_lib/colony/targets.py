"""Targets are resolved, never trusted: what the colony sends an agent, and what it audits.

The operator names a target by service, pod, namespace, container, agent or node; the
colony resolves it against its registry (colony/routing.py) and RBAC judges that result.
The agent is then told only the resolved namespace, pod and container name; it finds the
container itself and checks it belongs to that pod. A raw container id from the caller is
refused (it once let an identity scoped to one namespace enter any container on a node by
id prefix). The agent reports what it actually entered; the colony writes that as an
`entered` audit record next to the operation's `started` and `finished` records.
"""

from __future__ import annotations

import logging

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.colony.v1 import colony_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import audit as audit_mod
from coral_lib.colony import registry as registry_mod

log = logging.getLogger(__name__)
RAW_TARGET_RULE = "raw-target"


def raw_container_id(field: str, target: agent_pb2.ExecTarget) -> str:
    """Why a request is refused when the caller set a raw container id ('' when it did not).
    The message is the same whatever the id, so it tells nothing about other containers."""
    if not target.container_id:
        return ""
    return (f"{field}.container_id is not accepted: name the pod, namespace and container "
            "instead; the colony resolves targets from its registry and the agent finds the "
            "container itself")


def agent_target(target: colony_pb2.Target) -> agent_pb2.ExecTarget:
    """What the agent is asked to enter: only what the colony resolved."""
    return agent_pb2.ExecTarget(namespace=target.namespace, pod_name=target.pod,
                                container_name=target.container)


def provenance(registry: registry_mod.Registry, target: colony_pb2.Target) -> str:
    """How the colony knows the target: the registry provenance of its service (explicit,
    discovered, overridden), `agent` for a whole agent, `pod` for a pod a DaemonSet agent
    reports without a service, `named` for a pod the operator named
    on an agent whose registry does not list it (the agent judges it)."""
    if not target.service:
        if target.pod and registry.pod(target.agent_id, target.namespace, target.pod):
            return "pod"  # a pod its DaemonSet agent reports, without a service
        return "named" if target.pod else "agent"
    flt = registry_mod.ServiceFilter(name=target.service, agent=target.agent_id)
    for _, svc in registry.services(flt):
        if svc.pod_name == target.pod and svc.namespace == target.namespace:
            name = mesh_pb2.ServiceProvenance.Name(svc.provenance)
            return name.removeprefix("SERVICE_PROVENANCE_").lower()
    return "unknown"


def record_entered(audit: audit_mod.AuditLog, *, op_id: str, target: colony_pb2.Target,
                   entered: agent_pb2.EnteredTarget, provenance: str) -> int:
    """The audit record of what the agent actually entered for operation `op_id`; 0 when
    it could not be written (the operation is already running: its `started` record stands
    and restart marks it interrupted if `finished` is lost too)."""
    try:
        return audit.append("entered", entered_fields(
            op_id=op_id, target=target, entered=entered, provenance=provenance))
    except audit_mod.AuditError as exc:
        log.error("audit record of what %s entered lost: %s", op_id, exc)
        return 0


def entered_fields(*, op_id: str, target: colony_pb2.Target, entered: agent_pb2.EnteredTarget,
                   provenance: str) -> dict[str, str]:
    """The fields of an `entered` audit record (written alone, or with `finished`)."""
    return {
        "op_id": op_id, "agent_id": target.agent_id, "node": entered.node,
        "namespace": entered.namespace, "pod": entered.pod,
        "container": entered.container, "container_id": entered.container_id,
        "resolved_by": entered.resolved_by, "provenance": provenance,
    }


def name(target: colony_pb2.Target) -> str:
    """namespace/pod/container, the service, or the agent: the log field `target`."""
    return ("/".join(p for p in (target.namespace, target.pod, target.container) if p)
            or target.service or target.agent_id)
