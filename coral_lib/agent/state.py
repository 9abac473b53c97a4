"""The agent's last-known service set on disk, so a restart neither drops nor duplicates."""

from __future__ import annotations

import json
import pathlib

from google.protobuf import json_format

from coral_lib import files
from coral_lib._proto.coral.mesh.v1 import mesh_pb2


def load(path: pathlib.Path) -> list[mesh_pb2.ServiceInfo]:
    try:
        rows = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        return []  # a damaged cache is only an optimisation lost: rediscover
    out = []
    for row in rows if isinstance(rows, list) else []:
        try:
            out.append(json_format.ParseDict(row, mesh_pb2.ServiceInfo()))
        except json_format.ParseError:
            continue
    return out


def save(path: pathlib.Path, services: list[mesh_pb2.ServiceInfo]) -> None:
    """Atomic: write a temp file, fsync, rename over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [json_format.MessageToDict(s, preserving_proto_field_name=True) for s in services]
    files.write_atomic(path, json.dumps(rows, sort_keys=True), mode=0o600)
