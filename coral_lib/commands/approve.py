"""`coral approve ID`, `coral deny ID`, `coral approvals`: decide held operations."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import IO

from coral_lib import client, files
from coral_lib.commands import common


def register(sub: argparse._SubParsersAction) -> None:
    for name, helptext in (("approve", "approve another identity's pending request"),
                           ("deny", "deny a pending request (or withdraw your own)")):
        parser = sub.add_parser(name, help=helptext)
        parser.add_argument("approval_id", metavar="ID")
        common.add_connection_args(parser)
        parser.set_defaults(func=decide_command, approve=name == "approve")
    listing = sub.add_parser("approvals", help="pending approval requests, oldest first")
    listing.add_argument("-o", "--output", choices=("table", "json"), default="table")
    common.add_connection_args(listing)
    listing.set_defaults(func=list_command)


def print_pending(info: client.ApprovalPending) -> None:
    """What an operator sees while the colony holds their request."""
    left = max(0.0, info.expires_at - time.time()) if info.expires_at else 0.0
    expiry = f"; expires in {left:.0f}s" if left else ""
    print(f"waiting for approval {info.approval_id} (coral approve {info.approval_id})"
          f"{expiry}", file=sys.stderr, flush=True)


def write_atomic(path: str, write: Callable[[IO[str]], int]) -> int:
    """Write through coral_lib.files (temp, fsync, rename, 0600): never a half-written file."""
    with files.atomic_open(path, mode=0o600, text=True) as handle:
        return write(handle)


def decide_command(args: argparse.Namespace) -> int:
    try:
        with common.connect(args) as colony:
            record = (colony.approve if args.approve else colony.deny)(args.approval_id)
    except client.CoralError as exc:
        return common.fail(str(exc))
    print(f"{record['approval_id']}: {record['state']} by {record['decided_by']} "
          f"({record['requester']} {record['verb']} on {record['target']}: {record['command']})")
    return 0


def list_command(args: argparse.Namespace) -> int:
    try:
        with common.connect(args) as colony:
            rows = colony.approvals()
    except client.CoralError as exc:
        return common.fail(str(exc))
    if args.output == "json":
        common.print_json(rows)
    else:
        now = time.time()
        for row in rows:
            row["expires_in"] = f"{max(0.0, row['expires_at'] - now):.0f}s"
        common.print_table(rows, ["approval_id", "requester", "verb", "target", "command",
                                  "expires_in"])
    return 0
