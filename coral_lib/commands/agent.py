"""`coral agent start|status`: run the agent in the foreground, or report its runtime."""

from __future__ import annotations

import argparse
import logging
import pathlib
import signal

from coral_lib import logs
from coral_lib.commands import agent_node, common

# Each verb imports the agent parts it runs: the host agent never loads the node agent's
# discovery, and `coral agent --help` loads neither.

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    agent = sub.add_parser("agent", help="run the agent")
    verbs = agent.add_subparsers(dest="agent_command", metavar="VERB")
    start = verbs.add_parser("start", help="run the agent in the foreground")
    start.add_argument("--config", default=None,
                       help="agent config YAML (default: .coral/agent-config.yaml if present)")
    start.add_argument("--state-dir", default=None, help="where the last-known set is kept")
    logs.add_argument(start)
    start.add_argument("--monitor-all", action="store_true",
                       help="sidecar: discover every container of the pod")
    start.add_argument("--socket", default=None,
                       help="local agent API socket (default /run/coral/agent.sock as root)")
    start.add_argument("--mode", choices=("passive", "active"), default=None,
                       help="active: probe each service's health (default: agent.mode)")
    add_listen_arguments(start)
    start.set_defaults(func=start_command)
    agent_node.register(verbs)
    status = verbs.add_parser("status", help="runtime context and capabilities of the agent")
    status.add_argument("--socket", default=None, help="the running agent's socket")
    status.add_argument("--config", default=None)
    status.set_defaults(func=status_command)
    ident = verbs.add_parser(
        "identity", help="the certificate this agent holds (exit 3: none valid, it must join)")
    ident.add_argument("--config", default=None)
    ident.add_argument("--state-dir", default=None)
    ident.set_defaults(func=identity_command)


def add_listen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-listen", default="",
                        help="host:port for plain-HTTP /metrics (default: off)")
    parser.add_argument("--health-listen", default="",
                        help="host:port for /healthz and /readyz (link up, discovery fresh; "
                             "default: off); may be the same as --metrics-listen")


def _config_path(given: str | None) -> str | None:
    if given:
        return given
    default = pathlib.Path(".coral/agent-config.yaml")
    return str(default) if default.exists() else None


def start_command(args: argparse.Namespace) -> int:
    from coral_lib.config import view as config  # validated in a child: no pydantic here

    try:
        cfg = config.load_agent_config(_config_path(args.config))
    except config.ConfigError as exc:
        return common.fail(str(exc), 2)
    if args.mode:
        cfg = cfg.model_copy(update={"agent": cfg.agent.model_copy(update={"mode": args.mode})})
    from coral_lib.agent import local_server, modes, observe, runner  # after the fork

    try:
        agent = modes.build(cfg, monitor_all=args.monitor_all,
                            state_dir=pathlib.Path(args.state_dir) if args.state_dir else None)
        runner.colony_ca(cfg)
    except config.ConfigError as exc:
        return common.fail(str(exc), 2)
    except modes.ModeError as exc:
        return common.fail(str(exc), 2)
    agent.socket_path = pathlib.Path(args.socket) if args.socket else local_server.default_socket()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.shutdown())
    try:
        served = observe.serve(agent, metrics_listen=args.metrics_listen,
                               health_listen=args.health_listen)
    except ValueError as exc:  # endpoint.ListenError names the flag
        return common.fail(str(exc), 2)
    try:
        agent.run()
    except config.ConfigError as exc:
        return common.fail(str(exc), 2)
    except OSError as exc:
        return common.fail(f"agent cannot start: {exc}")
    finally:
        for endpoint in served:
            endpoint.stop()
    return 0





def status_command(args: argparse.Namespace) -> int:
    """Ask the running agent; without one, detect here and say that no agent answered."""
    import grpc

    from coral_lib import config, convert
    from coral_lib.agent import context, local_server, modes

    path = pathlib.Path(args.socket) if args.socket else local_server.default_socket()
    try:
        ctx, source = local_server.runtime_context(path), f"agent at {path}"
    except grpc.RpcError:
        try:
            cfg = config.load_agent_config(_config_path(args.config))
        except config.ConfigError as exc:
            return common.fail(str(exc), 2)
        ctx, source = context.to_proto(modes.detect(cfg)), f"detected here (no agent at {path})"
    body = convert.to_dict(ctx)
    body["mode"] = context.mode_name(ctx)
    body["source"] = source
    common.print_json(body)
    return 0


def identity_command(args: argparse.Namespace) -> int:
    """Whether the agent holds a usable certificate (the host role asks before it creates a
    join token, so a deployed agent is not given a new one on every run)."""
    from coral_lib import config
    from coral_lib.agent import credentials, runner

    try:
        cfg = config.load_agent_config(_config_path(args.config))
        ca = runner.colony_ca(cfg)
    except config.ConfigError as exc:
        return common.fail(str(exc), 2)
    state_dir = pathlib.Path(args.state_dir) if args.state_dir else runner.default_state_dir()
    held = credentials.Holder(state_dir, cfg.agent.id, ca_pem=ca).load()
    if held is None:
        common.print_json({"valid": False, "agent_id": cfg.agent.id})
        return 3
    common.print_json({"valid": True, "agent_id": held.agent_id, "not_after": held.not_after,
                       "renew_at": held.renew_at()})
    return 0

