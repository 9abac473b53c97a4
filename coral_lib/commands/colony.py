"""`coral colony init|start`: create the colony's identity and serve it."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from coral_lib import config
from coral_lib.colony import pki, server
from coral_lib.commands import common

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    colony = sub.add_parser("colony", help="run the colony (registry, routing, audit)")
    verbs = colony.add_subparsers(dest="colony_command", metavar="VERB")
    init = verbs.add_parser("init", help="create CA, certificates, id, secret and admin token")
    init.add_argument("--data-dir", default=None, help="default: ~/.coral/colony")
    init.set_defaults(func=init_command)
    start = verbs.add_parser("start", help="serve the colony in the foreground")
    start.add_argument("--data-dir", default=None)
    start.add_argument("--listen", default=None, help="host:port (default 127.0.0.1:9443)")
    start.add_argument("--config", default=None, help="colony settings YAML")
    start.set_defaults(func=start_command)


def _settings(args: argparse.Namespace) -> config.ColonySettings:
    settings = config.load_colony_config(getattr(args, "config", None))
    updates = {k: v for k, v in (("data_dir", args.data_dir),
                                 ("listen", getattr(args, "listen", None))) if v}
    return settings.model_copy(update=updates)


def init_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        common.print_json(pki.ensure(settings.data_dir).summary())
    except config.ConfigError as exc:
        return common.fail(str(exc), 2)
    except OSError as exc:
        return common.fail(f"cannot create colony data directory: {exc}")
    return 0


def start_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        secret = settings.colony_secret() if (settings.secret.get_secret_value()
                                               or settings.secret_file) else ""
        state = server.open_state(
            data_dir=settings.data_dir, colony_id="" if settings.id == "default" else settings.id,
            colony_secret=secret, tokens_file=settings.tokens_file,
            heartbeat_interval=settings.heartbeat_interval,
            degraded_after=settings.degraded_after, unhealthy_after=settings.unhealthy_after,
        )
    except config.ConfigError as exc:
        return common.fail(str(exc), 2)
    except (OSError, ValueError) as exc:
        return common.fail(f"colony cannot start: {exc}")
    try:
        colony = server.ColonyServer(state, listen=settings.listen).start()
    except (OSError, RuntimeError) as exc:
        state.close()
        return common.fail(f"colony cannot listen on {settings.listen}: {exc}")
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    log.info("colony stopping")
    colony.stop()
    return 0
