"""The `coral` command: a thin argparse shell over library functions.

Each subcommand lives in coral_lib/commands/<name>.py and exposes register(subparsers);
the parser it adds sets `func`, which takes the parsed args and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "colony", "agent", "operator", "shell", "daemon", "webhook", "manifests", "approve",
    "tap", "trace", "policy",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coral", description="Coral fleet discovery and operations")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"coral_lib.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"coral_lib.commands.{name}":
                raise
            continue  # an optional command module that is not part of this build
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
