"""Issue 15: "operator.capture is the one tap/trace-to-files loop" (used by `coral tap`,
`coral trace` and the coral_tap module), and "Client.tap() and trace() yield typed events,
not raw protobufs"."""

from __future__ import annotations

import ast
import dataclasses
import io
import json
import pathlib
import struct

import pytest

from coral_lib import client
from coral_lib.operator import capture
from coral_lib.ops import pcap
from tests.support import coral_procs

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGETS = [{"agent": "web-1"}, {"agent": "node-a", "pod": "shop-1", "container": "app"}]


def _packets(path: pathlib.Path) -> list[bytes]:
    """The packet payloads of a classic pcap file (parsed here, independently of pcap.py)."""
    data = path.read_bytes()
    magic, = struct.unpack_from("=I", data)
    assert magic == pcap.MAGIC
    out, offset = [], 24
    while offset < len(data):
        _, _, caplen, _ = struct.unpack_from("=IIII", data, offset)
        out.append(data[offset + 16: offset + 16 + caplen])
        offset += 16 + caplen
    return out


def test_operator_capture_writes_one_pcap_per_target_and_drops_failed_ones(tmp_path):
    events = [
        client.TargetsResolved(TARGETS),
        client.Packet(target="web-1", ts=1.5, data=b"one", orig_len=3),
        client.Packet(target="node-a-shop-1-app", ts=2.0, data=b"lost", orig_len=4),
        client.Packet(target="web-1", ts=2.5, data=b"two", orig_len=90),
        client.CaptureEnded(target="web-1", packets=2, bytes=6, dropped=0, reason="duration"),
        client.TargetFailed(target="node-a-shop-1-app", error="refused: not allowed"),
    ]
    ended = []
    rows = capture.tap_to_files(iter(events), str(tmp_path / "out.pcap"), on_end=ended.append)
    assert [r.target for r in rows] == ["node-a-shop-1-app", "web-1"]
    failed, ok = rows
    assert ok == capture.Capture(target="web-1", agent="web-1", packets=2, bytes=6,
                                 path=str(tmp_path / "out-web-1.pcap"), reason="duration")
    assert failed.error == "refused: not allowed" and not failed.path and not failed.ok
    assert _packets(tmp_path / "out-web-1.pcap") == [b"one", b"two"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out-web-1.pcap"]  # no .part left
    assert [r.target for r in ended] == ["web-1", "node-a-shop-1-app"]


def test_operator_capture_one_target_writes_the_named_file_and_cleans_up_on_error(tmp_path):
    assert capture.output_paths("x/cap", ["a", "b"]) == {"a": "x/cap-a.pcap", "b": "x/cap-b.pcap"}
    assert capture.output_paths("x/cap.pcap", ["a"]) == {"a": "x/cap.pcap"}

    def broken():
        yield client.TargetsResolved(TARGETS[:1])
        yield client.Packet(target="web-1", ts=1.0, data=b"x", orig_len=1)
        raise client.Unreachable("colony unreachable at test: gone")

    with pytest.raises(client.Unreachable):
        capture.tap_to_files(broken(), str(tmp_path / "one.pcap"))
    assert list(tmp_path.iterdir()) == []  # an interrupted capture leaves nothing behind


def test_operator_capture_trace_lines_one_json_object_per_event():
    out = io.StringIO()
    rows = capture.trace_to_lines(iter([
        client.TargetsResolved(TARGETS[:1]),
        client.TraceRecord(target="web-1", record={"comm": "sh", "pid": 7}),
        client.TraceEnded(target="web-1", events=1, lost=0, reason="duration"),
    ]), out)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"comm": "sh", "pid": 7, "target": "web-1"}]
    assert rows == [capture.Trace(target="web-1", events=1, lost=0, reason="duration",
                                  ended=True)]


def _calls(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.func.attr for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}


def _defines(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.ClassDef)}


def test_coral_tap_cli_and_module_share_the_one_capture_loop():
    cli, module = ROOT / "coral_lib/commands/tap.py", ROOT / "plugins/modules/coral_tap.py"
    for path in (cli, module):
        assert "tap_to_files" in _calls(path), path
        assert not _defines(path) & {"output_paths", "PcapFiles", "capture"}, path
        assert "WhichOneof" not in path.read_text(), path  # typed events, not protobufs
    assert "trace_to_lines" in _calls(ROOT / "coral_lib/commands/trace.py")


def test_every_client_call_shapes_targets_one_way(host_fleet):
    """Closing note, "the client still shapes targets two ways (target_dict /
    convert.to_dict)": resolve, exec's on_targets and the first event of tap and trace give
    the same targets, keyed as exec results are (agent, not agent_id)."""
    targeting, port = client.Targeting(agent="web-1"), coral_procs.free_port()
    with host_fleet.client() as colony:
        resolved = colony.resolve(targeting)
        announced: list[list[dict]] = []
        outcome = colony.exec(targeting, argv=["true"], on_targets=announced.append)
        tapped = next(iter(colony.tap(targeting, duration=1, filter_expr=f"udp port {port}")))
        traced = next(iter(colony.trace(targeting, kind="exec", duration=1)))
    (result,) = outcome.results
    assert resolved == [{key: result[key] for key in resolved[0]}], resolved
    assert set(resolved[0]) == {"agent", "service", "namespace", "pod", "container", "node"}
    assert announced == [resolved] and outcome.targets == resolved
    assert tapped.targets == resolved and traced.targets == resolved


def test_client_tap_and_trace_yield_typed_events_from_a_real_colony(host_fleet,
                                                                    tmp_path):
    tap_types = (client.TargetsResolved, client.Packet, client.CaptureEnded,
                 client.TargetFailed)
    trace_types = (client.TargetsResolved, client.TraceRecord, client.TraceEnded,
                   client.TargetFailed)
    port = coral_procs.free_port()
    with host_fleet.client() as colony:
        tapped = list(colony.tap(client.Targeting(agent="web-1"), duration=1,
                                 filter_expr=f"udp port {port}"))
        traced = list(colony.trace(client.Targeting(agent="web-1"), kind="exec", duration=1))
        # the loop the CLI and module run, against the same real stream
        rows = capture.tap_to_files(colony.tap(client.Targeting(service="api"), duration=1,
                                               filter_expr=f"udp port {port}"),
                                    str(tmp_path / "api.pcap"))
    for events, types in ((tapped, tap_types), (traced, trace_types)):
        assert events and isinstance(events[0], client.TargetsResolved), events
        assert events[0].keys == ["web-1"]
        assert all(isinstance(e, types) and dataclasses.is_dataclass(e) for e in events), events
        assert isinstance(events[-1], client.CaptureEnded | client.TraceEnded
                          | client.TargetFailed), events
    (row,) = rows
    if row.ok:  # capturing needs privileges the agent may lack; then the failure is named
        assert row.reason and _packets(pathlib.Path(row.path)) == []
    else:
        assert row.error and not list(tmp_path.glob("api.pcap*"))
