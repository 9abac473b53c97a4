"""Conversions between domain records (coral_lib.service) and protobuf messages."""

from __future__ import annotations

from coral_lib import service as service_mod
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2

PROVENANCE_NAMES = {p.name.lower(): p for p in service_mod.Provenance}


def service_to_proto(info: service_mod.ServiceInfo) -> mesh_pb2.ServiceInfo:
    return mesh_pb2.ServiceInfo(
        component_name=info.component_name, port=info.port,
        health_endpoint=info.health_endpoint, service_type=info.service_type,
        labels=dict(info.labels), provenance=int(info.provenance), node_name=info.node_name,
        node_labels=dict(info.node_labels), namespace=info.namespace, pod_name=info.pod_name,
        container_name=info.container_name, pid=info.pid, process_name=info.process_name,
        health_interval_seconds=info.health_interval_seconds, sources=dict(info.sources),
    )


def service_from_proto(msg: mesh_pb2.ServiceInfo) -> service_mod.ServiceInfo:
    return service_mod.ServiceInfo(
        component_name=msg.component_name, port=msg.port, health_endpoint=msg.health_endpoint,
        service_type=msg.service_type, labels=dict(msg.labels),
        provenance=service_mod.Provenance(msg.provenance), node_name=msg.node_name,
        node_labels=dict(msg.node_labels), namespace=msg.namespace, pod_name=msg.pod_name,
        container_name=msg.container_name, pid=msg.pid, process_name=msg.process_name,
        health_interval_seconds=msg.health_interval_seconds, sources=dict(msg.sources),
    )


def service_key(msg: mesh_pb2.ServiceInfo) -> str:
    """Identity of a service within one agent (namespace/pod/container/name:port)."""
    return f"{msg.namespace}/{msg.pod_name}/{msg.container_name}/{msg.component_name}:{msg.port}"


_PROVENANCE_BY_VALUE = {int(p): p.name.lower() for p in service_mod.Provenance}


def provenance_name(value: int) -> str:
    return _PROVENANCE_BY_VALUE.get(value) or service_mod.Provenance(value).name.lower()


def parse_provenance(text: str) -> service_mod.Provenance:
    """'discovered' / 'OVERRIDDEN' ... -> Provenance, with an error listing what is accepted."""
    try:
        return PROVENANCE_NAMES[text.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown provenance {text!r}; expected one of {', '.join(PROVENANCE_NAMES)}"
        ) from None


_SERVICE_FIELDS = tuple(f.name for f in mesh_pb2.ServiceInfo.DESCRIPTOR.fields)
_SERVICE_MAPS = ("labels", "node_labels", "sources")


def service_dict(msg: mesh_pb2.ServiceInfo) -> dict:
    """A ServiceInfo as a plain dict, provenance as its lower-case name. Built field by field:
    json_format is ~10x slower, which shows when a listing holds thousands of services
    (the names are read from the descriptor once; an empty map is not iterated)."""
    row = {name: getattr(msg, name) for name in _SERVICE_FIELDS}
    for name in _SERVICE_MAPS:
        row[name] = dict(row[name]) if row[name] else {}
    row["provenance"] = provenance_name(msg.provenance)
    return row


def to_dict(msg) -> dict:
    """A protobuf message as a plain dict with snake_case keys and default values kept."""
    from google.protobuf import json_format  # ~9 ms to import; a fleet exec never needs it

    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def exec_outcome(result: agent_pb2.ExecResult) -> str:
    """One exec's per-target status: ok, failed, error, timeout or refused (the agent's
    structured verdict, never its message text); the colony audits it, the agent counts it."""
    if result.refused:
        return "refused"
    if result.error:
        return "error"
    if result.timed_out:
        return "timeout"
    return "ok" if result.exit_code == 0 else "failed"
