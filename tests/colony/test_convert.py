"""convert.service_dict equals json_format's dict (but for provenance as a short name)."""

from __future__ import annotations

from coral_lib import convert
from coral_lib._proto.coral.mesh.v1 import mesh_pb2


def test_service_dict_matches_message_to_dict():
    full = mesh_pb2.ServiceInfo(
        component_name="api", port=8080, health_endpoint="/h", service_type="http",
        labels={"a": "b"}, provenance=3, node_name="n", node_labels={"zone": "z"},
        namespace="ns", pod_name="p", container_name="c", pid=42, process_name="py",
        health_interval_seconds=5.0, sources={"port": "annotation"})
    for msg in (full, mesh_pb2.ServiceInfo()):
        expected = convert.to_dict(msg)
        expected["provenance"] = convert.provenance_name(msg.provenance)
        assert convert.service_dict(msg) == expected
