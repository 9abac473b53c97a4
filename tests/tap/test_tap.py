"""Tap (packet capture) in network namespaces the tests create (issue 6, "Tap" acceptance)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from coral_lib.ops import base, bpf_filter, pcap, tap
from tests.tap import conftest as helpers


def test_tap_filter_applied_in_created_netns_and_tcpdump_reads_pcap(peer, start_capture,
                                                                     tmp_path):
    """Acceptance: traffic on the netns loopback appears in the pcap with the filter applied
    (port 9090 traffic is sent too and must be absent); `tcpdump -r` parses the file."""
    running = start_capture(peer, netns_path=peer.netns_path, filter_expr="tcp port 8080",
                            duration=60)
    peer.exchange(9090, 700)
    peer.exchange(8080, 500)
    peer.exchange(9090, 700)
    summary = running.finish()
    assert summary.reason == "stopped"
    assert summary.packets == len(running.packets) > 0
    ports = {helpers.tcp_ports(p) for p in running.packets}
    assert all(8080 in pair for pair in ports), ports
    path = tmp_path / "tap.pcap"
    helpers.write_pcap(path, running.packets)
    lines = helpers.tcpdump_read(path)
    assert len(lines) == summary.packets
    assert all(".8080" in line and ".9090" not in line for line in lines), lines
    # Loopback shows every frame twice (outgoing + incoming); exactly one SYN means no dups.
    assert sum("Flags [S]," in line for line in lines) == 1, lines
    captured = b"".join(p.data for p in running.packets)
    assert b"PORT08080-" in captured and b"PORT09090-" not in captured


def test_tap_by_pid_without_filter_sees_only_its_namespace(peer, start_capture):
    """Empty filter captures both ports of the namespace; host loopback traffic sent at the
    same time stays out (the socket is bound to the target namespace)."""
    running = start_capture(peer, netns_pid=peer.pid, duration=60)
    host_srv = socket.create_server(("127.0.0.1", 0))
    host_port = host_srv.getsockname()[1]
    with socket.create_connection(("127.0.0.1", host_port)) as client:
        client.sendall(b"host traffic")
    host_srv.close()
    peer.exchange(8080, 100)
    peer.exchange(9090, 100)
    running.finish()
    ports = {port for p in running.packets if (pair := helpers.tcp_ports(p)) for port in pair}
    assert {8080, 9090} <= ports
    assert host_port not in ports


def test_tap_interface_lo_and_pcap_roundtrip(peer, start_capture, tmp_path):
    running = start_capture(peer, netns_pid=peer.pid, interface="lo", filter_expr="tcp")
    peer.exchange(8080, 300)
    running.finish()
    path = tmp_path / "lo.pcap"
    helpers.write_pcap(path, running.packets)
    snaplen, linktype, back = pcap.read_packets(path.read_bytes())
    assert (snaplen, linktype) == (pcap.DEFAULT_SNAPLEN, 1)
    assert [p.data for p in back] == [p.data for p in running.packets]


def test_tap_limit_max_packets_stops_capture(peer, start_capture):
    running = start_capture(peer, netns_pid=peer.pid, filter_expr="tcp", duration=60,
                            max_packets=3)
    peer.exchange(8080, 100)  # a connection is ~8 frames
    summary = running.wait()
    assert (summary.reason, summary.packets, len(running.packets)) == ("max_packets", 3, 3)


def test_tap_limit_max_bytes_stops_capture(peer, start_capture):
    running = start_capture(peer, netns_pid=peer.pid, filter_expr="tcp", duration=60,
                            max_bytes=400)
    peer.exchange(8080, 2000)
    summary = running.wait()
    assert summary.reason == "max_bytes"
    assert summary.bytes == sum(len(p.data) for p in running.packets) <= 400
    assert summary.packets >= 1


def test_tap_limit_duration_stops_capture(peer, start_capture):
    started = time.monotonic()
    running = start_capture(peer, netns_pid=peer.pid, duration=0.5)
    summary = running.wait()
    assert summary.reason == "duration"
    assert summary.packets == 0
    assert time.monotonic() - started >= 0.5


def test_tap_headers_only_truncates_packets(peer, start_capture, tmp_path):
    """Observe-only taps record headers only: every frame cut to 128 bytes, wire length kept."""
    running = start_capture(peer, netns_pid=peer.pid, filter_expr="tcp port 8080",
                            headers_only=True)
    peer.exchange(8080, 4000)
    running.finish()
    assert running.packets
    assert all(len(p.data) <= tap.HEADERS_ONLY_SNAPLEN for p in running.packets)
    assert max(p.orig_len for p in running.packets) >= 4000
    assert b"PORT08080-" * 10 not in b"".join(p.data for p in running.packets)
    path = tmp_path / "headers.pcap"
    helpers.write_pcap(path, running.packets, snaplen=tap.HEADERS_ONLY_SNAPLEN)
    assert len(helpers.tcpdump_read(path)) == len(running.packets)


def test_tap_capture_to_pcap_writes_readable_file(peer, tmp_path):
    path = tmp_path / "direct.pcap"
    stop = threading.Event()
    threading.Thread(target=lambda: (peer.wait_capture_bound(), peer.exchange(8080, 50),
                                     stop.set()), daemon=True).start()
    with open(path, "wb") as f:
        summary = tap.capture_to_pcap(f, netns_pid=peer.pid, filter_expr="tcp port 8080",
                                      duration=30, stop=stop)
    assert summary.reason == "stopped" and summary.packets > 0
    assert len(helpers.tcpdump_read(path)) == summary.packets


@pytest.mark.parametrize("expr", ["tcp prot 8080", "port 99999", "-w /tmp/x"])
def test_tap_bad_filter_error_names_expression(expr):
    with pytest.raises(bpf_filter.FilterError) as info:
        tap.capture(filter_expr=expr, duration=1, on_packet=lambda p: None)
    assert repr(expr) in str(info.value)
    assert "tcp port 80" in str(info.value)  # says what would be accepted


def test_tap_unknown_interface_error_names_it(netns):
    with pytest.raises(base.OperationError, match="'nope0'"):
        tap.capture(netns_path=f"/run/netns/{netns}", interface="nope0", duration=1,
                    on_packet=lambda p: None)


def test_tap_missing_namespace_error_names_it():
    with pytest.raises(base.OperationError, match="/run/netns/coral-no-such-ns"):
        tap.capture(netns_path="/run/netns/coral-no-such-ns", duration=1,
                    on_packet=lambda p: None)


def test_tap_not_a_namespace_file_error_names_it(tmp_path):
    bogus = tmp_path / "not-a-netns"
    bogus.write_text("x")
    with pytest.raises(base.OperationError, match="not-a-netns"):
        tap.capture(netns_path=str(bogus), duration=1, on_packet=lambda p: None)


@pytest.mark.parametrize("limits", [
    {"duration": 0}, {"duration": -1}, {"max_packets": 0}, {"max_bytes": 0},
])
def test_tap_limits_must_be_positive(limits):
    kwargs = {"duration": 1.0, "max_packets": 1, "max_bytes": 1} | limits
    with pytest.raises(base.OperationError, match=repr(next(iter(limits.values())))):
        tap.check_limits(**kwargs)


def test_tap_netns_pid_and_path_are_exclusive():
    with pytest.raises(base.OperationError, match="not both"):
        tap.netns_file(netns_pid=1, netns_path="/run/netns/x")


def test_bpf_filter_compiles_with_snaplen_in_accept():
    program = bpf_filter.compile_filter("tcp port 80", snaplen=128)
    assert (6, 0, 0, 128) in program and program[-1] == (6, 0, 0, 0)
    assert bpf_filter.compile_filter("") == [(6, 0, 0, pcap.DEFAULT_SNAPLEN)]


def test_bpf_filter_parse_rejects_truncated_output():
    with pytest.raises(bpf_filter.FilterError, match="'x'"):
        bpf_filter.parse_ddd("2\n6 0 0 1\n", expr="x")


def test_pcap_header_and_record_layout():
    header = pcap.file_header(snaplen=128)
    assert len(header) == 24 and int.from_bytes(header[:4], "little") == 0xA1B2C3D4
    rec = pcap.record(ts=1.25, data=b"abc", orig_len=10)
    assert len(rec) == 16 + 3 and rec.endswith(b"abc")
    _, _, [packet] = pcap.read_packets(header + rec)
    assert packet == pcap.Packet(ts=1.25, data=b"abc", orig_len=10)
