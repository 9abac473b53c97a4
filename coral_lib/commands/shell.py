"""`coral shell`: an interactive PTY in one target, relayed through the colony."""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import signal
import sys
import termios
import threading
import tty

from coral_lib import client
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib.commands import common, operator

_END = object()


def register(sub: argparse._SubParsersAction) -> None:
    shell = sub.add_parser("shell", help="interactive shell in one target")
    operator.add_targeting_args(shell)
    common.add_connection_args(shell)
    shell.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD...",
                       help="what to run (default /bin/sh)")
    shell.set_defaults(func=shell_command)


def _size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdin.fileno())
        return size.lines, size.columns
    except OSError:
        return 24, 80


def _inputs(frames: queue.Queue):
    while True:
        item = frames.get()
        if item is _END:
            return
        yield item


def _read_stdin(frames: queue.Queue, interactive: bool) -> None:
    fd = sys.stdin.fileno()
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            if not interactive:  # piped input ended: tell the remote program, keep reading out
                frames.put(agent_pb2.ShellInput(close_stdin=True))
            return
        frames.put(agent_pb2.ShellInput(stdin=data))


@contextlib.contextmanager
def _raw_terminal(interactive: bool):
    if not interactive:
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    # TCSANOW keeps what the user typed ahead; in raw mode Ctrl-C travels as a byte and the
    # remote terminal turns it into SIGINT for the remote program.
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def shell_command(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    interactive = sys.stdin.isatty()
    frames: queue.Queue = queue.Queue()
    rows, cols = _size()
    if interactive:
        signal.signal(signal.SIGWINCH, lambda *_: frames.put(
            agent_pb2.ShellInput(resize=agent_pb2.Resize(rows=_size()[0], cols=_size()[1]))))
    try:
        targeting = operator.targeting_from_args(args)
        with common.connect(args) as colony, _raw_terminal(interactive):
            threading.Thread(target=_read_stdin, args=(frames, interactive), daemon=True).start()
            for out in colony.shell(targeting, inputs=_inputs(frames), argv=argv, rows=rows,
                                    cols=cols, term=os.environ.get("TERM", "xterm")):
                kind = out.WhichOneof("output")
                if kind == "data":
                    sys.stdout.buffer.write(out.data)
                    sys.stdout.buffer.flush()
                elif kind == "exit_code":
                    return out.exit_code
                elif kind == "error":
                    frames.put(_END)
                    return common.fail(out.error)
        return common.fail("the shell ended without an exit code")
    except client.CoralError as exc:
        return common.fail(str(exc))
    finally:
        frames.put(_END)
