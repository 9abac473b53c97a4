"""`coral trace exec|connect`: eBPF events from each target, printed as JSON lines."""

from __future__ import annotations

import argparse
import sys

from coral_lib import client, durations
from coral_lib.commands import approve, common, operator
from coral_lib.operator import capture


def register(sub: argparse._SubParsersAction) -> None:
    trace = sub.add_parser("trace", help="trace exec or connect events on the targets (eBPF)")
    trace.add_argument("kind", choices=("exec", "connect"))
    operator.add_targeting_args(trace)
    trace.add_argument("--duration", default="10s", help="how long to trace (default 10s)")
    trace.add_argument("--max-events", type=int, default=10000)
    trace.add_argument("--approval-id", default="")
    trace.add_argument("--no-wait", action="store_true")
    common.add_connection_args(trace)
    trace.set_defaults(func=trace_command)


def trace_command(args: argparse.Namespace) -> int:
    try:
        duration = durations.parse_duration(args.duration)
    except ValueError as exc:
        return common.fail(f"--duration: {exc}", 2)
    def report(row: capture.Trace) -> None:
        if row.error:
            print(f"{row.target}: {row.error}", file=sys.stderr)
        else:
            print(f"{row.target}: {row.events} events, {row.lost} lost (ended by {row.reason})",
                  file=sys.stderr)

    try:
        with common.connect(args) as colony:
            events = colony.trace(
                operator.targeting_from_args(args), kind=args.kind, duration=duration,
                max_events=args.max_events, approval_id=args.approval_id,
                wait_for_approval=not args.no_wait, on_pending=approve.print_pending)
            traces = capture.trace_to_lines(events, sys.stdout, on_end=report)
    except client.ApprovalPending as exc:
        print(exc.approval_id)
        return 3
    except client.CoralError as exc:
        return common.fail(str(exc))
    return 1 if any(t.error for t in traces) else 0
