"""`coral agent node`: run the DaemonSet agent for one node in the foreground.

`register(verbs)` adds the verb to `coral agent`'s subparsers; `python -m
coral_lib.commands.agent_node ARGS` runs the same command on its own.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import signal
import sys
from typing import TYPE_CHECKING

from coral_lib import logs

if TYPE_CHECKING:
    from coral_lib.agent import node

# The agent (config models, gRPC, discovery) loads when the verb runs, not when `coral
# agent` builds its parser.
log = logging.getLogger(__name__)


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("node", help="run the DaemonSet agent for one Kubernetes node")
    add_arguments(parser)
    parser.set_defaults(func=node_command)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="agent config YAML (default: defaults + CORAL_* environment)")
    parser.add_argument("--kubeconfig", default=None,
                        help="kubeconfig file (default: the in-cluster service account)")
    parser.add_argument("--node-name", default="", help="this node (default: $NODE_NAME)")
    for flag, what in (("--include-namespace", "discover only these namespaces"),
                       ("--exclude-namespace", "never discover these namespaces"),
                       ("--include-label", "discover only pods with this label k=v"),
                       ("--exclude-label", "never discover pods with this label k=v")):
        parser.add_argument(flag, action="append", default=[], help=f"{what} (repeatable)")
    parser.add_argument("--override-file", default=None,
                        help="YAML list of override rules, as the config's overrides[]")
    parser.add_argument("--cri-socket", default=None,
                        help="CRI runtime socket for exec (default: the well-known sockets)")
    parser.add_argument("--state-dir", default=None, help="where the last-known set is kept")
    logs.add_argument(parser)
    parser.add_argument("--mode", choices=("passive", "active"), default=None,
                        help="active: probe each service's health (default: agent.mode)")
    parser.add_argument("--metrics-listen", default="",
                        help="host:port for plain-HTTP /metrics (default: off)")
    parser.add_argument("--health-listen", default="",
                        help="host:port for /healthz and /readyz (link up, pods listed and "
                             "discovery fresh; default: off); may equal --metrics-listen")


def options(args: argparse.Namespace) -> node.NodeOptions:
    """Flags -> NodeOptions; ValueError naming the bad flag value."""
    from coral_lib import selection
    from coral_lib.agent import node

    return node.NodeOptions(
        node_name=args.node_name, kubeconfig=args.kubeconfig,
        include_namespaces=tuple(args.include_namespace),
        exclude_namespaces=tuple(args.exclude_namespace),
        include_labels=selection.parse_label_pairs(args.include_label, what="--include-label"),
        exclude_labels=selection.parse_label_pairs(args.exclude_label, what="--exclude-label"),
        override_file=args.override_file, cri_socket=args.cri_socket, mode=args.mode,
    )


def config_path(given: str | None, environ) -> str | None:
    """--config, else $CORAL_AGENT_CONFIG when that file exists (the DaemonSet mounts the
    optional ConfigMap coral-agent-config there), else None (defaults + environment)."""
    if given:
        return given
    mounted = environ.get("CORAL_AGENT_CONFIG", "")
    return mounted if mounted and os.path.exists(mounted) else None


def node_command(args: argparse.Namespace) -> int:
    from coral_lib.config import view as config  # validated in a child: no pydantic here

    try:
        cfg = config.load_agent_config(config_path(args.config, os.environ))
    except config.ConfigError as exc:
        return _fail(str(exc), 2)
    from coral_lib.agent import node, observe  # after the fork (node loads gRPC)
    from coral_lib.discovery import kubeclient

    try:
        agent = node.build(cfg, options(args),
                           state_dir=pathlib.Path(args.state_dir) if args.state_dir else None)
    except (config.ConfigError, kubeclient.KubeConfigError, ValueError) as exc:
        return _fail(str(exc), 2)
    except Exception as exc:  # noqa: BLE001 - kubeconfig / in-cluster loading failures
        return _fail(f"cannot reach the Kubernetes API: {exc}", 2)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.shutdown())
    try:
        served = observe.serve(agent, metrics_listen=args.metrics_listen,
                               health_listen=args.health_listen,
                               pod_watch_stats=agent.watcher.stats)
    except ValueError as exc:  # endpoint.ListenError names the flag
        return _fail(str(exc), 2)
    try:
        agent.run()
    except config.ConfigError as exc:
        return _fail(str(exc), 2)
    except OSError as exc:
        return _fail(f"agent cannot start: {exc}")
    finally:
        for endpoint in served:
            endpoint.stop()
    return 0


def _fail(message: str, code: int = 1) -> int:
    """As commands.common.fail; common imports the colony client (~0.7 MB of RSS) that the
    DaemonSet agent never uses."""
    print(f"coral: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="coral agent node")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logs.configure(log_format=args.log_format)
    return node_command(args)


if __name__ == "__main__":
    sys.exit(main())
