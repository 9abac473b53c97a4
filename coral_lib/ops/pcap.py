"""Classic libpcap file format (the one `tcpdump -r` reads) and the packet record we stream."""

from __future__ import annotations

import dataclasses
import struct
from typing import BinaryIO

MAGIC = 0xA1B2C3D4  # microsecond timestamps, written in native order like libpcap does
VERSION_MAJOR = 2
VERSION_MINOR = 4
LINKTYPE_ETHERNET = 1
DEFAULT_SNAPLEN = 262144  # tcpdump's default; larger than any GSO packet on lo or veth

_FILE_HEADER = struct.Struct("=IHHiIII")
_RECORD_HEADER = struct.Struct("=IIII")


@dataclasses.dataclass(frozen=True)
class Packet:
    """One captured frame: wall-clock seconds, the captured bytes, the length on the wire."""

    ts: float
    data: bytes
    orig_len: int


def file_header(*, snaplen: int, linktype: int = LINKTYPE_ETHERNET) -> bytes:
    if not 0 < snaplen <= 0x7FFFFFFF:
        raise ValueError(f"pcap snaplen {snaplen} is out of range (1..2147483647)")
    return _FILE_HEADER.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR, 0, 0, snaplen, linktype)


def record(*, ts: float, data: bytes, orig_len: int) -> bytes:
    """Record header + data. orig_len is never below the captured length (pcap invariant)."""
    usec_total = int(round(ts * 1_000_000))
    sec, usec = divmod(usec_total, 1_000_000)
    caplen = len(data)
    return _RECORD_HEADER.pack(sec, usec, caplen, max(orig_len, caplen)) + data


def write_header(f: BinaryIO, *, snaplen: int, linktype: int = LINKTYPE_ETHERNET) -> None:
    f.write(file_header(snaplen=snaplen, linktype=linktype))


def write_packet(f: BinaryIO, *, ts: float, data: bytes, orig_len: int) -> None:
    f.write(record(ts=ts, data=data, orig_len=orig_len))


def read_packets(data: bytes) -> tuple[int, int, list[Packet]]:
    """Parse a pcap file written by this module: (snaplen, linktype, packets). For tests/tools."""
    if len(data) < _FILE_HEADER.size:
        raise ValueError("pcap data is shorter than the 24-byte file header")
    magic, _, _, _, _, snaplen, linktype = _FILE_HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"not a native-order microsecond pcap file (magic {magic:#x})")
    packets, offset = [], _FILE_HEADER.size
    while offset < len(data):
        sec, usec, caplen, orig = _RECORD_HEADER.unpack_from(data, offset)
        offset += _RECORD_HEADER.size
        packets.append(Packet(ts=sec + usec / 1e6, data=data[offset:offset + caplen],
                              orig_len=orig))
        offset += caplen
    return snaplen, linktype, packets
