"""`coral tap`: capture packets in each target's network namespace into pcap files."""

from __future__ import annotations

import argparse
import os
import sys

from coral_lib import client, durations
from coral_lib.commands import approve, common, operator
from coral_lib.ops import pcap


def register(sub: argparse._SubParsersAction) -> None:
    tap = sub.add_parser("tap", help="capture packets on the selected targets (pcap files)")
    operator.add_targeting_args(tap)
    tap.add_argument("--filter", default="", help='capture filter, e.g. "tcp port 80"')
    tap.add_argument("--duration", default="10s", help="how long to capture (default 10s)")
    tap.add_argument("--max-packets", type=int, default=1000)
    tap.add_argument("--max-bytes", type=int, default=10 << 20)
    tap.add_argument("--headers-only", action="store_true", help="keep the first 128 bytes")
    tap.add_argument("-o", "--output", required=True,
                     help="pcap file; with several targets OUT-<agent>-<pod>.pcap each")
    tap.add_argument("--approval-id", default="")
    tap.add_argument("--no-wait", action="store_true")
    common.add_connection_args(tap)
    tap.set_defaults(func=tap_command)


def output_paths(output: str, keys: list[str]) -> dict[str, str]:
    """out.pcap for one target, out-<key>.pcap for each of several."""
    if len(keys) == 1:
        return {keys[0]: output}
    stem, ext = os.path.splitext(output)
    return {key: f"{stem}-{key}{ext or '.pcap'}" for key in keys}


class PcapFiles:
    """One pcap file per target, written under a temporary name and renamed when done."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths
        self.handles = {key: open(f"{path}.part", "wb") for key, path in paths.items()}
        for handle in self.handles.values():
            pcap.write_header(handle, snaplen=pcap.DEFAULT_SNAPLEN)

    def write(self, key: str, packet) -> None:
        pcap.write_packet(self.handles[key], ts=packet.ts, data=packet.data,
                          orig_len=packet.orig_len)

    def close(self, *, keep: set[str]) -> None:
        """Rename the finished captures into place; drop the ones that failed."""
        for key, handle in self.handles.items():
            handle.close()
            if key in keep:
                os.replace(f"{self.paths[key]}.part", self.paths[key])
            else:
                os.unlink(f"{self.paths[key]}.part")


def tap_command(args: argparse.Namespace) -> int:
    try:
        duration = durations.parse_duration(args.duration)
    except ValueError as exc:
        return common.fail(f"--duration: {exc}", 2)
    files: PcapFiles | None = None
    failed, counts = 0, {}
    try:
        with common.connect(args) as colony:
            for key, event in colony.tap(
                    operator.targeting_from_args(args), filter_expr=args.filter,
                    duration=duration, max_packets=args.max_packets, max_bytes=args.max_bytes,
                    headers_only=args.headers_only, approval_id=args.approval_id,
                    wait_for_approval=not args.no_wait, on_pending=approve.print_pending):
                if key == "targets":
                    files = PcapFiles(output_paths(args.output,
                                                   [client.tap_key(t) for t in event]))
                    continue
                which = event.WhichOneof("event")
                if which == "packet":
                    files.write(key, event.packet)
                elif which == "summary":
                    s = event.summary
                    counts[key] = s.packets
                    print(f"{key}: {s.packets} packets, {s.bytes} bytes, {s.dropped} dropped "
                          f"(ended by {s.reason}) -> {files.paths[key]}", file=sys.stderr)
                else:
                    failed += 1
                    print(f"{key}: {event.error}", file=sys.stderr)
    except client.ApprovalPending as exc:
        print(exc.approval_id)
        return 3
    except client.CoralError as exc:
        return common.fail(str(exc))
    finally:
        if files is not None:
            files.close(keep=set(counts))
    return 1 if failed else 0
