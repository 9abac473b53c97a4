"""One ListServices answer built from the registry's stored ServiceInfo bytes (pure).

The registry keeps each service as its serialized ServiceInfo (`services.body`). A page
of 1,000 records built as messages parsed every body, then copied each into a new
ServiceRecord field by field in Python; here each record's wire form is written around
the stored bytes (agent_id = 1, service = 2, health = 3 of ServiceRecord; services = 1,
next_page_token = 2 of ListServicesResponse) and the whole answer is parsed once, in C.
Protobuf's wire format makes the two the same message (tests/colony/test_service_page.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from coral_lib._proto.coral.colony.v1 import colony_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field (tag: its key byte, field number << 3 | 2)."""
    return tag + _varint(len(data)) + data


def response(rows: Sequence[tuple[str, str, bytes]],
             health: Mapping[tuple[str, str], mesh_pb2.ServiceHealth],
             next_page_token: str = "") -> colony_pb2.ListServicesResponse:
    """The answer for `rows` ((agent id, service key, stored ServiceInfo bytes), in page
    order) with each row's latest probe from `health` (keyed by (agent id, key))."""
    parts = []
    for agent_id, key, body in rows:
        record = _field(b"\x0a", agent_id.encode()) + _field(b"\x12", bytes(body))
        probe = health.get((agent_id, key))
        if probe is not None:
            record += _field(b"\x1a", probe.SerializeToString())
        parts.append(_field(b"\x0a", record))
    if next_page_token:
        parts.append(_field(b"\x12", next_page_token.encode()))
    return colony_pb2.ListServicesResponse.FromString(b"".join(parts))
