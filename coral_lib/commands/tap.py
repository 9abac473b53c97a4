"""`coral tap`: capture packets in each target's network namespace into pcap files."""

from __future__ import annotations

import argparse
import sys

from coral_lib import client, durations
from coral_lib.commands import approve, common, operator
from coral_lib.operator import capture


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


def tap_command(args: argparse.Namespace) -> int:
    try:
        duration = durations.parse_duration(args.duration)
    except ValueError as exc:
        return common.fail(f"--duration: {exc}", 2)
    def report(row: capture.Capture) -> None:
        if row.error:
            print(f"{row.target}: {row.error}", file=sys.stderr)
        else:
            print(f"{row.target}: {row.packets} packets, {row.bytes} bytes, {row.dropped} "
                  f"dropped (ended by {row.reason}) -> {row.path}", file=sys.stderr)

    try:
        with common.connect(args) as colony:
            events = colony.tap(
                operator.targeting_from_args(args), filter_expr=args.filter,
                duration=duration, max_packets=args.max_packets, max_bytes=args.max_bytes,
                headers_only=args.headers_only, approval_id=args.approval_id,
                wait_for_approval=not args.no_wait, on_pending=approve.print_pending)
            captures = capture.tap_to_files(events, args.output, on_end=report)
    except client.ApprovalPending as exc:
        print(exc.approval_id)
        return 3
    except client.CoralError as exc:
        return common.fail(str(exc))
    return 1 if any(c.error for c in captures) else 0
