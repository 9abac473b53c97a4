"""`coral trace exec|connect`: eBPF events from each target, printed as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys

from coral_lib import client, durations
from coral_lib.commands import approve, common, operator


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
    failed = 0
    try:
        with common.connect(args) as colony:
            for key, event in colony.trace(
                    operator.targeting_from_args(args), kind=args.kind, duration=duration,
                    max_events=args.max_events, approval_id=args.approval_id,
                    wait_for_approval=not args.no_wait, on_pending=approve.print_pending):
                if key == "targets":
                    continue
                which = event.WhichOneof("event")
                if which == "json":
                    print(json.dumps({"target": key, **json.loads(event.json)},
                                     sort_keys=True), flush=True)
                elif which == "summary":
                    s = event.summary
                    print(f"{key}: {s.events} events, {s.lost} lost (ended by {s.reason})",
                          file=sys.stderr)
                else:
                    failed += 1
                    print(f"{key}: {event.error}", file=sys.stderr)
    except client.ApprovalPending as exc:
        print(exc.approval_id)
        return 3
    except client.CoralError as exc:
        return common.fail(str(exc))
    return 1 if failed else 0
