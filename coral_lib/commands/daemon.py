"""`coral daemon start|stop|status|restart|run`: supervise a process where systemd does not run.

start/stop/restart/status print one JSON object, so playbooks can read `changed` and `pid`.
"""

from __future__ import annotations

import argparse
import json
import sys

from coral_lib import supervise

EXIT_NOT_RUNNING = 3  # the LSB init-script code for "program is not running"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("daemon", help="supervise a background process (no systemd)")
    sub = parser.add_subparsers(dest="daemon_command", metavar="ACTION", required=True)
    for action, helptext in (
        ("start", "start the supervisor unless it already runs this command"),
        ("restart", "stop the supervisor (if running) and start it again"),
        ("run", "run the supervisor in the foreground (what `start` launches)"),
    ):
        p = sub.add_parser(action, help=helptext)
        _add_supervisor_args(p, with_log_file=action != "run")
        p.set_defaults(func=_ACTIONS[action])
    for action, helptext in (("stop", "stop the supervisor and its command"),
                             ("status", "exit 0 when running, 3 when not")):
        p = sub.add_parser(action, help=helptext)
        _add_pid_file(p)
        p.set_defaults(func=_ACTIONS[action])


def _add_pid_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pid-file", required=True, help="pid file owned by the supervisor")


def _add_supervisor_args(parser: argparse.ArgumentParser, *, with_log_file: bool) -> None:
    _add_pid_file(parser)
    parser.add_argument("--name", required=True, help="a name for log lines")
    parser.add_argument("--restart", default="always", choices=supervise.RESTART_POLICIES,
                        help="when to start the command again after it exits")
    parser.add_argument("--stop-grace", type=float, default=supervise.STOP_GRACE,
                        help="seconds between TERM and KILL when stopping the command")
    if with_log_file:
        parser.add_argument("--log-file", required=True,
                            help="file that receives the command's stdout/stderr")
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- ARGV",
                        help="the command to supervise, after --")


def run_main(argv: list[str]) -> int:
    """The foreground supervisor without the rest of the CLI (what `start` launches as
    `python -m coral_lib.commands.daemon`, so it stays small: no gRPC, no pydantic)."""
    parser = argparse.ArgumentParser(prog="coral daemon run")
    _add_supervisor_args(parser, with_log_file=False)
    return _run(parser.parse_args(argv))


def _argv(args: argparse.Namespace) -> list[str]:
    argv = list(args.argv)
    return argv[1:] if argv[:1] == ["--"] else argv


def _emit(**fields: object) -> None:
    print(json.dumps(fields, sort_keys=True))


def _fail(message: str) -> int:
    _emit(failed=True, msg=message)
    return 1


def _start(args: argparse.Namespace, *, force: bool = False) -> int:
    try:
        if force:
            supervise.stop(args.pid_file)
        state, changed = supervise.start(
            name=args.name, argv=_argv(args), pid_file=args.pid_file,
            log_file=args.log_file, restart=args.restart, stop_grace=args.stop_grace)
    except (supervise.SupervisorError, ValueError) as exc:
        return _fail(str(exc))
    _emit(changed=changed or force, running=state.running, pid=state.pid, name=args.name)
    return 0


def _restart(args: argparse.Namespace) -> int:
    return _start(args, force=True)


def _run(args: argparse.Namespace) -> int:
    try:
        return supervise.run_supervisor(
            name=args.name, argv=_argv(args), pid_file=args.pid_file, restart=args.restart,
            stop_grace=args.stop_grace)
    except (supervise.SupervisorError, ValueError) as exc:
        return _fail(str(exc))


def _stop(args: argparse.Namespace) -> int:
    try:
        was_running = supervise.stop(args.pid_file)
    except supervise.SupervisorError as exc:
        return _fail(str(exc))
    _emit(changed=was_running, running=False)
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        state = supervise.status(args.pid_file)
    except supervise.SupervisorError as exc:
        return _fail(str(exc))
    _emit(running=state.running, pid=state.pid if state.running else None, argv=list(state.argv))
    return 0 if state.running else EXIT_NOT_RUNNING


_ACTIONS = {"start": _start, "restart": _restart, "run": _run, "stop": _stop, "status": _status}


if __name__ == "__main__":
    raise SystemExit(run_main(sys.argv[1:]))
