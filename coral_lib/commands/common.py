"""Helpers shared by subcommands: colony connection options, output, error exits."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import TYPE_CHECKING

from coral_lib import validate
from coral_lib.operator import connect as connect_mod

if TYPE_CHECKING:
    from coral_lib import client

# operator.connect loads the client (gRPC) only when a command connects, and config
# (pydantic) only when the local colony's data directory is needed, so the agent verbs,
# which use fail() and print_json() only, do without them.


def default_data_dir() -> pathlib.Path:
    """The local colony's data directory (see coral_lib.operator.connect)."""
    return connect_mod.default_data_dir()


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    # No defaults here: coral_lib.operator.connect applies CORAL_* and the local colony.
    group = parser.add_argument_group("colony connection (flags beat CORAL_* environment)")
    group.add_argument("--colony", default=None,
                       help=f"colony address host:port (CORAL_COLONY_ADDRESS; default "
                            f"{connect_mod.DEFAULT_ADDRESS})")
    group.add_argument("--ca", default=None,
                       help="colony CA certificate (CORAL_CA_FILE; default: local colony's)")
    group.add_argument("--token", default=None, help="operator token (CORAL_TOKEN)")
    group.add_argument("--token-file", default=None,
                       help="file holding the operator token (CORAL_TOKEN_FILE)")


def connect(args: argparse.Namespace) -> client.Client:
    """Connect with the given options, CORAL_* variables and the local colony's files."""
    return connect_mod.connect(address=args.colony, ca_file=args.ca, token=args.token,
                               token_file=args.token_file)


def fail(message: str, code: int = 1) -> int:
    print(f"coral: error: {message}", file=sys.stderr)
    return code


def print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def print_table(rows: list[dict], columns: list[str]) -> None:
    """Rows as aligned columns; control characters in cells are escaped (names come from
    agents, and a newline or ANSI escape in one must not forge a row or repaint the screen)."""
    cells = [[validate.printable(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
