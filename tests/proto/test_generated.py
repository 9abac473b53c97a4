"""The generated Python code matches the .proto files (run `make proto` when this fails)."""

from __future__ import annotations

import filecmp
import pathlib

from tools import gen_proto

GENERATED = pathlib.Path(gen_proto.ROOT) / "coral_lib" / "_proto"


def _files(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
            and "__pycache__" not in p.parts}


def test_generated_code_is_up_to_date_with_proto_files(tmp_path):
    fresh = tmp_path / "_proto"
    gen_proto.generate(fresh)
    assert _files(fresh) == _files(GENERATED), "generated file set differs: run make proto"
    stale = [f for f in sorted(_files(fresh)) if not filecmp.cmp(fresh / f, GENERATED / f,
                                                                  shallow=False)]
    assert not stale, f"out of date with proto/: {stale}; run make proto"


def test_old_single_service_register_message_still_parses():
    """A RegisterRequest from an agent that only knows component_name decodes unchanged."""
    from coral_lib._proto.coral.mesh.v1 import mesh_pb2
    # field 1 agent_id="a", field 2 component_name="svc", field 3 colony_id="c"
    wire = b"\x0a\x01a\x12\x03svc\x1a\x01c"
    msg = mesh_pb2.RegisterRequest.FromString(wire)
    assert (msg.agent_id, msg.component_name, msg.colony_id) == ("a", "svc", "c")
    assert list(msg.services) == []
