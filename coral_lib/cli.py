"""The `coral` command: a thin argparse shell over library functions.

Each subcommand lives in coral_lib/commands/<name>.py and exposes register(subparsers);
the parser it adds sets `func`, which takes the parsed args and returns an exit code.

`coral agent node` (the DaemonSet agent, one per node, budget 50 MB of RSS) takes a fast
path that imports only its own command module: importing every command module pulls in
the colony, webhook, cryptography and psutil, about 12 MB the agent never uses.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from coral_lib import __version__

COMMAND_MODULES = (
    "colony", "agent", "operator", "shell", "daemon", "webhook", "manifests", "approve",
    "tap", "trace", "policy",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coral", description="Coral fleet discovery and operations")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"coral {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"coral_lib.commands.{name}").register(sub)
    return parser


def agent_node_parser() -> argparse.ArgumentParser:
    """`coral [-v] agent node ...` with only coral_lib.commands.agent_node imported."""
    from coral_lib.commands import agent_node

    parser = argparse.ArgumentParser(prog="coral")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    agent = parser.add_subparsers(dest="command").add_parser("agent", help="run the agent")
    agent_node.register(agent.add_subparsers(dest="agent_command", metavar="VERB"))
    return parser


def is_agent_node(argv: Sequence[str]) -> bool:
    """Whether the first two words (after -v) are `agent node`."""
    words = [a for a in argv if a not in ("-v", "--verbose")]
    return words[:2] == ["agent", "node"]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = agent_node_parser() if is_agent_node(argv) else build_parser()
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
