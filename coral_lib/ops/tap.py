"""Packet capture (tap) in a target's network namespace with an AF_PACKET socket.

Entering the namespace: setns(CLONE_NEWNET) moves only the calling thread, and a forked
copy of a threaded server (gRPC) is not safe to run Python in. So a fresh interpreter
(subprocess, fork+exec) joins the namespace, creates an unbound AF_PACKET socket
(protocol 0: it receives nothing yet) and hands the descriptor back over a unix
socketpair with SCM_RIGHTS. A socket belongs to the namespace it was created in for its
whole life, so everything else (filter, bind, reads) happens here in the caller. The
filter is attached before bind, so no unfiltered packet is ever queued.
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from coral_lib.ops import base, bpf_filter, pcap

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SIOCGIFINDEX = 0x8933
PACKET_OUTGOING = 4
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
HEADERS_ONLY_SNAPLEN = 128  # Ethernet 14 + IPv6 40 + TCP with options 60 = 114
RCVBUF = 8 << 20
MAX_DURATION = 24 * 3600.0

_AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata; tp_len is the wire length
_TIMESPEC = struct.Struct("=qq")

@dataclasses.dataclass(frozen=True)
class CaptureSummary:
    packets: int
    bytes: int
    dropped: int  # dropped by the kernel (receive queue full)
    reason: str  # duration | max_packets | max_bytes | stopped
    skipped: int = 0  # frames of interfaces without an Ethernet header (not representable)


def check_limits(*, duration: float, max_packets: int, max_bytes: int) -> None:
    """Limits always apply, so each must be a positive finite number."""
    if not 0 < duration <= MAX_DURATION:
        raise base.OperationError(f"tap duration {duration!r} must be > 0 and at most "
                                  f"{MAX_DURATION:.0f} seconds")
    if max_packets < 1:
        raise base.OperationError(f"tap max_packets {max_packets!r} must be at least 1")
    if max_bytes < 1:
        raise base.OperationError(f"tap max_bytes {max_bytes!r} must be at least 1")


def netns_file(*, netns_pid: int | None, netns_path: str | None) -> str | None:
    """Which namespace file to join; None means the caller's own network namespace."""
    if netns_pid is not None and netns_path is not None:
        raise base.OperationError("tap takes netns_pid or netns_path, not both")
    if netns_pid is not None:
        if netns_pid < 1:
            raise base.OperationError(f"tap netns_pid {netns_pid!r} is not a process id")
        return f"/proc/{netns_pid}/ns/net"
    return netns_path


def capture(
    *,
    netns_pid: int | None = None,
    netns_path: str | None = None,
    interface: str | None = None,
    filter_expr: str = "",
    duration: float = 10.0,
    max_packets: int = 1000,
    max_bytes: int = 10 << 20,
    headers_only: bool = False,
    on_packet: Callable[[pcap.Packet], None],
    stop: threading.Event | None = None,
) -> CaptureSummary:
    """Capture in the namespace until a limit or `stop`; each packet goes to on_packet.

    interface None captures on every interface of the namespace, loopback included.
    Frames still queued when a limit or `stop` ends the tap are discarded.
    max_bytes caps the captured bytes handed out (a packet that would pass it ends the tap).
    """
    check_limits(duration=duration, max_packets=max_packets, max_bytes=max_bytes)
    snaplen = snaplen_for(headers_only=headers_only)
    program = bpf_filter.compile_filter(filter_expr, snaplen=snaplen)
    sock = open_socket(netns=netns_file(netns_pid=netns_pid, netns_path=netns_path))
    with sock:
        _prepare(sock, program=program, interface=interface)
        return _read_loop(sock, snaplen=snaplen, deadline=time.monotonic() + duration,
                          max_packets=max_packets, max_bytes=max_bytes,
                          on_packet=on_packet, stop=stop or threading.Event())


def capture_to_pcap(f: BinaryIO, **kwargs) -> CaptureSummary:
    """capture() straight into a pcap file object (header first, then each packet)."""
    pcap.write_header(f, snaplen=snaplen_for(headers_only=kwargs.get("headers_only", False)))
    return capture(on_packet=lambda p: pcap.write_packet(
        f, ts=p.ts, data=p.data, orig_len=p.orig_len), **kwargs)


def snaplen_for(*, headers_only: bool) -> int:
    return HEADERS_ONLY_SNAPLEN if headers_only else pcap.DEFAULT_SNAPLEN


def open_socket(*, netns: str | None) -> socket.socket:
    """An unbound AF_PACKET socket created in the given network namespace."""
    if netns is None:
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        ns_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise base.OperationError(f"cannot open network namespace {netns}: "
                                  f"{exc.strerror}") from exc
    try:
        return _socket_from_child(ns_fd, netns=netns)
    finally:
        os.close(ns_fd)


def _socket_from_child(ns_fd: int, *, netns: str) -> socket.socket:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", base.program_text("tap_child.py"), str(ns_fd),
             str(theirs.fileno())],
            pass_fds=(ns_fd, theirs.fileno()), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        theirs.close()
        ours.settimeout(30)
        try:
            msg, fds, _, _ = socket.recv_fds(ours, 4096, 1)
        except TimeoutError:
            msg, fds = b"", []
        finally:
            err = _reap(proc)
    if msg == b"OK" and len(fds) == 1:
        return socket.socket(fileno=fds[0])
    for fd in fds:
        os.close(fd)
    detail = msg.removeprefix(b"ERR ") or err.strip()[-300:] or b"no answer"
    raise base.OperationError(f"cannot open a capture socket in network namespace {netns}: "
                              f"{detail.decode(errors='replace')}")


def _reap(proc: subprocess.Popen) -> bytes:
    """The helper's stderr; a helper still running after its answer (or none) is killed."""
    try:
        return proc.communicate(timeout=10)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1]


def _prepare(sock: socket.socket, *, program: bpf_filter.Program, interface: str | None) -> None:
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    try:  # a larger queue means fewer drops in bursts; needs CAP_NET_ADMIN
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:
        pass
    bpf_filter.attach(sock, program)
    _bind(sock, ifindex=_ifindex(sock, interface) if interface else 0)


def _ifindex(sock: socket.socket, interface: str) -> int:
    """Resolve the name through the socket itself, hence in the socket's namespace."""
    name = interface.encode()
    if not 0 < len(name) < 16 or b"\x00" in name or b"/" in name:
        raise base.OperationError(f"tap interface {interface!r} is not a valid interface name")
    try:
        res = fcntl.ioctl(sock.fileno(), SIOCGIFINDEX, struct.pack("16si12x", name, 0))
    except OSError as exc:
        raise base.OperationError(f"no interface {interface!r} in the target network "
                                  f"namespace: {exc.strerror}") from exc
    return struct.unpack_from("16si", res)[1]


def _bind(sock: socket.socket, *, ifindex: int) -> None:
    """bind(sockaddr_ll) directly: Python's AF_PACKET bind cannot say "all interfaces"."""
    addr = struct.pack("=HHiHBB8x", socket.AF_PACKET, socket.htons(ETH_P_ALL), ifindex, 0, 0, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.bind(sock.fileno(), ctypes.c_char_p(addr), len(addr)) != 0:
        err = ctypes.get_errno()
        raise base.OperationError(f"cannot bind the capture socket: {os.strerror(err)}")


def _read_loop(sock, *, snaplen, deadline, max_packets, max_bytes, on_packet, stop):
    buf = bytearray(snaplen)
    packets = nbytes = skipped = 0
    reason = ""
    while not reason:
        reason = "stopped" if stop.is_set() else ""
        remaining = deadline - time.monotonic()
        if reason or remaining <= 0:
            reason = reason or "duration"
            break
        if not select.select([sock], [], [], min(remaining, 0.2))[0]:
            continue
        packet, keep = _receive(sock, buf)
        if packet is None:
            skipped += not keep
            continue
        if nbytes + len(packet.data) > max_bytes:
            reason = "max_bytes"
            break
        on_packet(packet)
        packets, nbytes = packets + 1, nbytes + len(packet.data)
        reason = "max_packets" if packets >= max_packets else ""
    return CaptureSummary(packets=packets, bytes=nbytes, dropped=_drops(sock), reason=reason,
                          skipped=skipped)


def _receive(sock: socket.socket, buf: bytearray) -> tuple[pcap.Packet | None, bool]:
    """(packet, True); (None, True) for a loopback duplicate; (None, False) for a skip."""
    try:
        n, anc, _, addr = sock.recvmsg_into([buf], 256, socket.MSG_TRUNC | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None, True
    pkttype, hatype = addr[2], addr[3]
    if hatype == ARPHRD_LOOPBACK and pkttype == PACKET_OUTGOING:
        return None, True  # lo shows each packet twice (out and in): keep the incoming copy
    if hatype not in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
        return None, False
    caplen = min(n, len(buf))
    ts, orig_len = time.time(), n
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = _TIMESPEC.unpack_from(data)
            ts = sec + nsec / 1e9
        elif level == SOL_PACKET and kind == PACKET_AUXDATA:
            orig_len = _AUXDATA.unpack_from(data)[1]
    return pcap.Packet(ts=ts, data=bytes(buf[:caplen]), orig_len=max(orig_len, caplen)), True


def _drops(sock: socket.socket) -> int:
    """Kernel drop counter (struct tpacket_stats {tp_packets; tp_drops})."""
    try:
        return struct.unpack("=II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))[1]
    except OSError:
        return 0
