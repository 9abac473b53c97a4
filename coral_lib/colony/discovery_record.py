"""The audit record of one change to an agent's service set (pure).

One `discovery` record per registration or service update that changes anything, not one
per service: the record names the agent, the services that appeared (`added`) and
disappeared (`removed`) by their key (namespace/pod/container/name:port), the services that
stayed but changed (`changed`, `overridden`: the full new service, as before), how many
services the agent has now and a digest of that whole set. Building a full record per
service was most of a registration's CPU in the colony (issue 11, registration rate).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from coral_lib import convert
from coral_lib._proto.coral.mesh.v1 import mesh_pb2

EVENTS = ("added", "removed", "changed", "overridden")
OVERRIDDEN = mesh_pb2.SERVICE_PROVENANCE_OVERRIDDEN


def set_digest(services: Iterable[mesh_pb2.ServiceInfo]) -> str:
    """'sha256:<hex>' over the set in key order: each service as its key and its
    deterministic protobuf bytes, both length-prefixed. Equal sets, equal digests."""
    h = hashlib.sha256()
    for key, body in sorted((convert.service_key(s), s.SerializeToString(deterministic=True))
                            for s in services):
        for part in (key.encode(), body):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return "sha256:" + h.hexdigest()


def fields(*, agent_id: str, added: list[mesh_pb2.ServiceInfo],
           removed: list[mesh_pb2.ServiceInfo], changed: list[mesh_pb2.ServiceInfo],
           now: list[mesh_pb2.ServiceInfo], runtime: str = "") -> dict | None:
    """The record's fields, or None when nothing changed (no record)."""
    if not (added or removed or changed):
        return None
    now = list({convert.service_key(s): s for s in now}.values())  # as stored: last wins
    record = {
        "agent_id": agent_id,
        "added": sorted(convert.service_key(s) for s in added),
        "removed": sorted(convert.service_key(s) for s in removed),
        "changed": [convert.to_dict(s) for s in changed if s.provenance != OVERRIDDEN],
        "overridden": [convert.to_dict(s) for s in changed if s.provenance == OVERRIDDEN],
        "services": len(now),
        "digest": set_digest(now),
    }
    if runtime:
        record["runtime"] = runtime
    return record


def events(record: dict) -> list[tuple[str, str]]:
    """(event, service key) for every service a discovery record names, in EVENTS order;
    also reads the older one-record-per-service shape ({"event", "service": {...}})."""
    if isinstance(record.get("service"), dict):
        return [(str(record.get("event", "")), _key(record["service"]))]
    return [(event, item if isinstance(item, str) else _key(item))
            for event in EVENTS for item in record.get(event) or ()]


def _key(service: dict) -> str:
    """An older record's service (a dict) by the one key format, convert.service_key."""
    return convert.service_key(mesh_pb2.ServiceInfo(
        namespace=service.get("namespace", ""), pod_name=service.get("pod_name", ""),
        container_name=service.get("container_name", ""),
        component_name=service.get("component_name", ""), port=int(service.get("port") or 0)))
