"""Issue 6 acceptance (tap): traffic generated on the loopback of a network namespace the
test creates appears in the pcap `coral tap` writes, with the filter applied, limits
honoured, headers only for observe-only pods; `tcpdump -r` parses every file."""

from __future__ import annotations

import struct
import subprocess
import sys
import time

from tests.support import coral_procs

SENDER = r"""
import socket, sys, time
port, other, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + seconds
while time.monotonic() < end:
    s.sendto(b"coral-tap-probe" + b"x" * 600, ("127.0.0.1", port))
    s.sendto(b"not-wanted", ("127.0.0.1", other))
    time.sleep(0.05)
"""


def _tap(colony, netns, out, *args, seconds=4.0, send_for=3.0):
    """Run `coral tap` while the namespace's loopback carries UDP to 9999 and 9998."""
    tap = subprocess.Popen([*coral_procs.CORAL, "tap", *args, "--duration", f"{seconds}s",
                            "-o", str(out)], env={**__import__("os").environ,
                                                  **colony.operator_env},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # the agent opens its socket in well under a second
    subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", SENDER, "9999", "9998",
                    str(send_for)], check=True, timeout=30)
    stdout, stderr = tap.communicate(timeout=60)
    return tap.returncode, stdout, stderr


def _tcpdump(path) -> list[str]:
    run = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def _caplens(path) -> list[int]:
    data = path.read_bytes()
    offset, lens = 24, []
    while offset < len(data):
        _, _, caplen, _ = struct.unpack_from("=IIII", data, offset)
        lens.append(caplen)
        offset += 16 + caplen
    return lens


def test_tap_in_test_netns_writes_filtered_pcap_tcpdump_reads(tapped, tmp_path):
    colony, netns = tapped
    out = tmp_path / "out.pcap"
    code, _, stderr = _tap(colony, netns, out, "--agent", "ns-agent", "--filter", "udp port 9999")
    assert code == 0, stderr
    assert "ns-agent:" in stderr and "(ended by duration)" in stderr
    lines = _tcpdump(out)
    assert len(lines) >= 10, lines
    assert all("127.0.0.1" in line and ".9999: UDP" in line for line in lines), lines[:5]
    assert not any(".9998" in line for line in lines)
    with colony.client() as c:
        started = [r for r in c.audit(kind="started") if r["verb"] == "tap"]
        assert started and "'--filter=udp port 9999'" in started[-1]["command"]
        ends = [r for r in c.audit(kind="finished", op_id=started[-1]["op_id"])]
        assert ends and ends[0]["status"] == "ok" and ends[0]["bytes_out"] > 0


def test_tap_limits_always_apply(tapped, tmp_path):
    colony, netns = tapped
    out = tmp_path / "few.pcap"
    code, _, stderr = _tap(colony, netns, out, "--agent", "ns-agent", "--filter", "udp",
                           "--max-packets", "3", seconds=8)
    assert code == 0, stderr
    assert "3 packets" in stderr and "ended by max_packets" in stderr
    assert len(_tcpdump(out)) == 3


def test_tap_of_observe_only_pod_records_headers_only(tapped, tmp_path):
    colony, netns = tapped
    out = tmp_path / "quiet.pcap"
    code, _, stderr = _tap(colony, netns, out, "--service", "quiet", "--filter", "udp port 9999")
    assert code == 0, stderr
    lens = _caplens(out)
    assert lens and max(lens) <= 128
    assert len(_tcpdump(out)) == len(lens)


def test_tap_unknown_filter_is_a_clear_error_and_leaves_no_file(tapped, tmp_path):
    colony, _ = tapped
    out = tmp_path / "bad.pcap"
    run = coral_procs.coral("tap", "--agent", "ns-agent", "--filter", "tcp prot 80",
                            "--duration", "1s", "-o", str(out), env=colony.operator_env)
    assert run.returncode == 1
    assert "ns-agent:" in run.stderr and "filter" in run.stderr
    assert not out.exists() and not list(tmp_path.glob("bad.pcap*"))
