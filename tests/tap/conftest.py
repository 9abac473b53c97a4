"""Fixtures for tap tests: a network namespace per test, with a traffic peer living in it."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
import threading
import time

import pytest

from coral_lib.ops import pcap, tap

PORTS = (8080, 9090)

# Lives in the test namespace: echo servers on PORTS of 127.0.0.1; on "PORT SIZE" from
# stdin it connects to PORT, sends SIZE bytes of a marker, reads the echo and answers "ok".
_PEER = r"""
import socket, sys, threading
def serve(srv):
    while True:
        conn, _ = srv.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)
for port in (8080, 9090):
    srv = socket.create_server(("127.0.0.1", port))
    threading.Thread(target=serve, args=(srv,), daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    port, size = map(int, line.split())
    marker = b"PORT%05d-" % port
    payload = (marker * (size // len(marker) + 1))[:size]
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := c.recv(65536):
            got += chunk
    print("ok" if got == payload else "bad", flush=True)
"""

_counter = itertools.count()


@dataclasses.dataclass
class Peer:
    netns: str
    proc: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    def exchange(self, port: int, size: int) -> None:
        """One TCP connection to port inside the namespace: send size bytes, get the echo."""
        self.proc.stdin.write(f"{port} {size}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def wait_capture_bound(self, timeout: float = 10.0) -> None:
        """Block until an ETH_P_ALL packet socket is bound in the namespace (tap is live)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(f"/proc/{self.pid}/net/packet") as f:
                rows = [line.split() for line in f.readlines()[1:]]
            if any(row[3] == "0003" and row[5] == "1" for row in rows):
                return
            time.sleep(0.02)
        raise AssertionError(f"no capture socket appeared in netns {self.netns}")


@pytest.fixture
def netns():
    """A fresh network namespace with only loopback, up; removed afterwards."""
    name = f"coraltap-{os.getpid()}-{next(_counter)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
def peer(netns):
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", _PEER],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield Peer(netns=netns, proc=proc)
    finally:
        proc.kill()
        proc.wait()


@dataclasses.dataclass
class Running:
    thread: threading.Thread
    stop: threading.Event
    packets: list[pcap.Packet]
    result: dict

    def finish(self, timeout: float = 30.0) -> tap.CaptureSummary:
        """Stop once the capture went quiet, so frames still queued are not cut off."""
        count, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < 0.3 and self.thread.is_alive():
            if len(self.packets) != count:
                count, quiet_since = len(self.packets), time.monotonic()
            time.sleep(0.02)
        self.stop.set()
        return self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> tap.CaptureSummary:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "capture did not end"
        if "error" in self.result:
            raise self.result["error"]
        return self.result["summary"]


@pytest.fixture
def start_capture():
    """Start tap.capture on a thread; returns a handle to stop it and read the packets."""
    running: list[Running] = []

    def start(peer: Peer, **kwargs) -> Running:
        handle = Running(thread=None, stop=threading.Event(), packets=[], result={})

        def body():
            try:
                handle.result["summary"] = tap.capture(
                    on_packet=handle.packets.append, stop=handle.stop, **kwargs)
            except Exception as exc:  # handed to the test thread by wait()
                handle.result["error"] = exc

        handle.thread = threading.Thread(target=body, daemon=True)
        handle.thread.start()
        running.append(handle)
        peer.wait_capture_bound()
        return handle

    yield start
    for handle in running:
        handle.stop.set()
        handle.thread.join(10)


def write_pcap(path, packets: list[pcap.Packet], *, snaplen: int = pcap.DEFAULT_SNAPLEN) -> None:
    with open(path, "wb") as f:
        pcap.write_header(f, snaplen=snaplen)
        for p in packets:
            pcap.write_packet(f, ts=p.ts, data=p.data, orig_len=p.orig_len)


def tcpdump_read(path) -> list[str]:
    """`tcpdump -r` the file: must exit 0; returns its one-line-per-packet output."""
    proc = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def tcp_ports(packet: pcap.Packet) -> tuple[int, int] | None:
    """(sport, dport) of an Ethernet/IPv4/TCP frame, else None."""
    data = packet.data
    if len(data) < 34 or data[12:14] != b"\x08\x00" or data[23] != 6:
        return None
    ihl = (data[14] & 0x0F) * 4
    off = 14 + ihl
    return int.from_bytes(data[off:off + 2], "big"), int.from_bytes(data[off + 2:off + 4], "big")
