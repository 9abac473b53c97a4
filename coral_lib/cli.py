"""The `coral` command: a thin argparse shell over library functions.

Each subcommand lives in coral_lib/commands/<module>.py and exposes register(subparsers);
the parser it adds sets `func`, which takes the parsed args and returns an exit code.

Only the module of the command being run is imported (COMMANDS maps each command word to
its module): importing them all pulls in gRPC, pydantic, cryptography, the colony and the
webhook, about 0.4 s and 50 MB before argparse has read a word. `coral --help` (or no
command, or an unknown one) imports no command module at all: the top-level help comes
from the one-line texts in COMMANDS, which tests/lean/test_lazy_cli.py holds equal to the
help each module registers.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence

from coral_lib import __version__, logs

# command word -> (module under coral_lib.commands, the help its register() gives it)
COMMANDS: dict[str, tuple[str, str]] = {
    "colony": ("colony", "run the colony (registry, routing, audit)"),
    "agent": ("agent", "run the agent"),
    "agents": ("operator", "list registered agents"),
    "services": ("operator", "list registered services"),
    "exec": ("operator", "run a command on the selected targets"),
    "audit": ("operator", "read and verify the audit log"),
    "shell": ("shell", "interactive shell in one target"),
    "daemon": ("daemon", "supervise a background process (no systemd)"),
    "webhook": ("webhook", "the sidecar auto-injection webhook"),
    "manifests": ("manifests", "render Kubernetes objects for a mode"),
    "approve": ("approve", "approve another identity's pending request"),
    "deny": ("approve", "deny a pending request (or withdraw your own)"),
    "approvals": ("approve", "pending approval requests, oldest first"),
    "tap": ("tap", "capture packets on the selected targets (pcap files)"),
    "trace": ("trace", "trace exec or connect events on the targets (eBPF)"),
    "policy": ("policy", "colony RBAC / approval / rate-limit policy"),
}
# Modules reached through another command module rather than through COMMANDS.
HELPER_MODULES = ("common", "agent_node")


def command_modules() -> list[str]:
    """Every module COMMANDS names, once, in table order."""
    return list(dict.fromkeys(module for module, _ in COMMANDS.values()))


def command_word(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv: the first word that is not a top-level option."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str] = (), *, load: Sequence[str] | None = None,
                 ) -> argparse.ArgumentParser:
    """The parser for argv: the full parser of the command argv names, one-line stubs
    (help only) for every other command. `load` names command modules to register
    regardless (the tests load them all)."""
    word = command_word(argv)
    wanted = set(load or ())
    if word in COMMANDS:
        wanted.add(COMMANDS[word][0])
    parser = argparse.ArgumentParser(
        prog="coral", description="Coral fleet discovery and operations")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"coral {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, helptext) in COMMANDS.items():
        if name in sub.choices:
            continue
        if module in wanted:  # register() adds all of its module's commands at once
            importlib.import_module(f"coral_lib.commands.{module}").register(sub)
        else:
            sub.add_parser(name, help=helptext)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command argv names (None: this process's command line, as the `coral`
    program does; the process then ends)."""
    program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logs.configure(log_format=getattr(args, "log_format", "text"), verbose=args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    code = int(args.func(args) or 0)
    if program:
        # The interpreter exits next. Its final garbage collections walk every object the
        # command imported (gRPC, protobuf: a fifth of a short `coral exec`'s CPU time)
        # only to find nothing to free: frozen objects are left out of them. atexit
        # handlers and the flush of stdout and stderr still run.
        gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(main())
