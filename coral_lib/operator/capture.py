"""Tap and trace streams to files: one home for the loop `coral tap`, `coral trace` and the
coral_tap module share. Each target's capture is written under a temporary name and renamed
into place only when the target finished, so a failed capture leaves no file behind."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable
from typing import IO

from coral_lib import client, files
from coral_lib.ops import pcap


@dataclasses.dataclass
class Capture:
    """What one target's capture produced; `path` is empty unless a file was written."""

    target: str
    agent: str = ""
    pod: str = ""
    path: str = ""
    packets: int = 0
    bytes: int = 0
    dropped: int = 0
    reason: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.path) and not self.error

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Trace:
    """What one target's trace produced."""

    target: str
    events: int = 0
    lost: int = 0
    reason: str = ""
    error: str = ""
    ended: bool = False

    @property
    def ok(self) -> bool:
        return self.ended and not self.error


def output_paths(output: str, keys: list[str]) -> dict[str, str]:
    """out.pcap for one target, out-<key>.pcap for each of several."""
    if len(keys) == 1:
        return {keys[0]: output}
    stem, ext = os.path.splitext(output)
    return {key: f"{stem}-{key}{ext or '.pcap'}" for key in keys}


class PcapFiles:
    """One pcap file per target (0644, like tcpdump's), written under a temporary name
    (coral_lib.files.PendingFile) and put in place when done."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths
        self.pending: dict[str, files.PendingFile] = {}
        try:
            for key, path in paths.items():
                self.pending[key] = files.PendingFile(path, mode=0o644)
                pcap.write_header(self.pending[key].handle, snaplen=pcap.DEFAULT_SNAPLEN)
        except OSError:
            self.close(keep=set())
            raise

    def write(self, key: str, packet: client.Packet) -> None:
        pcap.write_packet(self.pending[key].handle, ts=packet.ts, data=packet.data,
                          orig_len=packet.orig_len)

    def close(self, *, keep: set[str]) -> None:
        """Put the finished captures in place; drop the ones that failed."""
        for key, pending in self.pending.items():
            if key in keep:
                pending.commit()
            else:
                pending.discard()
        self.pending = {}


def tap_to_files(events: Iterable[client.TapEvent], output: str, *,
                 on_end: Callable[[Capture], None] | None = None) -> list[Capture]:
    """Write the packets of a Client.tap() stream to one pcap file per target (see
    output_paths); on_end is called as each target finishes. Captures sorted by target."""
    files: PcapFiles | None = None
    rows: dict[str, Capture] = {}
    try:
        for event in events:
            if isinstance(event, client.TargetsResolved):
                files = PcapFiles(output_paths(output, event.keys))
                rows = {client.tap_key(t): Capture(target=client.tap_key(t),
                                                   agent=t.get("agent", ""),
                                                   pod=t.get("pod", ""))
                        for t in event.targets}
            elif files is None or event.target not in rows:
                continue  # nothing is written for a target the colony did not announce
            elif isinstance(event, client.Packet):
                files.write(event.target, event)
            elif isinstance(event, client.CaptureEnded):
                row = rows[event.target]
                row.path, row.packets, row.bytes = files.paths[event.target], event.packets, \
                    event.bytes
                row.dropped, row.reason = event.dropped, event.reason
                if on_end:
                    on_end(row)
            elif isinstance(event, client.TargetFailed):
                row = rows[event.target]
                row.error, row.path = event.error, ""
                if on_end:
                    on_end(row)
    finally:
        if files is not None:
            files.close(keep={key for key, row in rows.items() if row.ok})
    return [rows[key] for key in sorted(rows)]


def trace_to_lines(events: Iterable[client.TraceEvent], out: IO[str], *,
                   on_end: Callable[[Trace], None] | None = None) -> list[Trace]:
    """Write each traced event of a Client.trace() stream to `out` as one JSON object per
    line (with its "target"), flushed as it arrives. Traces sorted by target."""
    rows: dict[str, Trace] = {}
    for event in events:
        if isinstance(event, client.TargetsResolved):
            rows = {key: Trace(target=key) for key in event.keys}
            continue
        row = rows.setdefault(event.target, Trace(target=event.target))
        if isinstance(event, client.TraceRecord):
            out.write(json.dumps({"target": event.target, **event.record}, sort_keys=True)
                      + "\n")
            out.flush()
        elif isinstance(event, client.TraceEnded):
            row.events, row.lost, row.reason, row.ended = event.events, event.lost, \
                event.reason, True
            if on_end:
                on_end(row)
        elif isinstance(event, client.TargetFailed):
            row.error = event.error
            if on_end:
                on_end(row)
    return [rows[key] for key in sorted(rows)]
