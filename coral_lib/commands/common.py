"""Helpers shared by subcommands: colony connection options, output, error exits."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from typing import TYPE_CHECKING

from coral_lib import validate

if TYPE_CHECKING:
    from coral_lib import client

# The client (gRPC) loads when a command connects, so the agent verbs, which use fail()
# and print_json() only, do without its ~0.7 MB. config (pydantic, ~0.2 s to import)
# loads only when the local colony's data directory is needed: a connection given by
# flags or CORAL_* variables does without it.

DEFAULT_ADDRESS = "127.0.0.1:9443"


def default_data_dir() -> pathlib.Path:
    """The local colony's data directory: CORAL_COLONY_DATA_DIR, else the colony's default."""
    from_env = os.environ.get("CORAL_COLONY_DATA_DIR")
    if from_env:
        return pathlib.Path(from_env)
    from coral_lib import config

    return pathlib.Path(config.default_data_dir())


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("colony connection (flags beat CORAL_* environment)")
    group.add_argument("--colony", default=os.environ.get("CORAL_COLONY_ADDRESS", DEFAULT_ADDRESS),
                       help="colony address host:port (CORAL_COLONY_ADDRESS)")
    group.add_argument("--ca", default=os.environ.get("CORAL_CA_FILE", ""),
                       help="colony CA certificate (CORAL_CA_FILE; default: local colony's)")
    group.add_argument("--token", default=os.environ.get("CORAL_TOKEN", ""),
                       help="operator token (CORAL_TOKEN)")
    group.add_argument("--token-file", default=os.environ.get("CORAL_TOKEN_FILE", ""),
                       help="file holding the operator token (CORAL_TOKEN_FILE)")


def connect(args: argparse.Namespace) -> client.Client:
    """Connect with the given options; fall back to the local colony's data directory."""
    from coral_lib import client

    ca = args.ca or str(default_data_dir() / "ca.crt")
    token = args.token
    if not token:
        token_file = args.token_file or str(default_data_dir() / "admin.token")
        try:
            token = pathlib.Path(token_file).read_text().strip()
        except OSError as exc:
            raise client.CoralError(
                f"no operator token: --token/CORAL_TOKEN not set and {token_file} is not "
                f"readable ({exc.strerror})") from None
    return client.connect(args.colony, ca_file=ca, token=token)


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
