"""`coral colony init|start`: create the colony's identity and serve it."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import pathlib
import signal
import sqlite3
import threading
from typing import TYPE_CHECKING

from coral_lib import client, durations, logs
from coral_lib.commands import common

if TYPE_CHECKING:
    from coral_lib import config
    from coral_lib.colony import guard

# The colony server, PKI (cryptography) and config models load in the verb that runs them.
log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    colony = sub.add_parser("colony", help="run the colony (registry, routing, audit)")
    verbs = colony.add_subparsers(dest="colony_command", metavar="VERB")
    init = verbs.add_parser("init", help="create CA, certificates, id, admin token, audit and "
                             "checkpoint keys")
    init.add_argument("--data-dir", default=None,
                      help="default: /var/lib/coral/colony as root, else ~/.coral/colony")
    init.add_argument("--hostname", action="append", default=[],
                      help="another DNS name for the server certificate when it is created "
                           "(repeatable), e.g. the Service replicas sit behind")
    init.add_argument("--config", default=None, help="colony settings YAML (where "
                      "auditKeyFile and checkpointKeyFile put the keys init creates)")
    init.set_defaults(func=init_command)
    start = verbs.add_parser("start", help="serve the colony in the foreground")
    start.add_argument("--data-dir", default=None)
    start.add_argument("--listen", default=None, help="host:port (default 127.0.0.1:9443)")
    start.add_argument("--config", default=None, help="colony settings YAML")
    start.add_argument("--policy", default=None,
                       help="RBAC/approval/rate-limit policy YAML (config policyFile); "
                            "without one only the admin identity may do anything")
    start.add_argument("--database", default=None,
                       help="postgresql://... DSN, env:NAME or file:PATH (replicas share it); "
                            "default: SQLite files in the data directory")
    start.add_argument("--replica-name", default=None, help="this replica's name in the set")
    start.add_argument("--replica-listen", default=None,
                       help="host:port of the replica port (mutual TLS between replicas)")
    start.add_argument("--replica-advertise", default=None,
                       help="host:port other replicas dial to reach this one")
    start.add_argument("--mtls-listen", default="",
                       help="host:port that requires client certificates (identity = CN)")
    start.add_argument("--metrics-listen", default="",
                       help="host:port for plain-HTTP /metrics, /healthz and /readyz "
                            "(default: off); bind it where only scrapers and probes reach")
    start.add_argument("--observe-only", action="store_true", default=None,
                       help="refuse exec/shell/tap/trace on every agent; reads still work")
    start.add_argument("--agent-cert-ttl", default=None,
                       help="lifetime of agent certificates (config agentCertTtl, default 24h);"
                            " agents renew at two thirds of it")
    start.add_argument("--token-review-kubeconfig", default=None,
                       help="check Kubernetes agents' service account tokens with TokenReview "
                            "on this cluster (config tokenReviewKubeconfig)")
    start.add_argument("--token-review-in-cluster", action="store_true", default=None,
                       help="the same with the colony pod's own service account")
    logs.add_argument(start)
    start.set_defaults(func=start_command)
    token = verbs.add_parser("token", help="operator tokens (tokens.json in the data dir)")
    token_verbs = token.add_subparsers(dest="token_command", metavar="VERB")
    add = token_verbs.add_parser("add", help="add or replace an identity's token; prints it")
    add.add_argument("--data-dir", default=None)
    add.add_argument("--config", default=None)
    add.add_argument("--identity", required=True)
    add.add_argument("--group", action="append", default=[], help="repeatable")
    add.set_defaults(func=token_add_command)
    join = verbs.add_parser("join-token", help="one-time join tokens for host agents")
    join_verbs = join.add_subparsers(dest="join_command", metavar="VERB")
    create = join_verbs.add_parser(
        "create", help="a token that lets one host agent join once as --agent-id; prints it")
    create.add_argument("--agent-id", required=True)
    create.add_argument("--ttl", default="1h", help="how long the token may be redeemed (1h)")
    create.add_argument("-o", "--output", choices=("token", "json"), default="token")
    common.add_connection_args(create)
    create.set_defaults(func=join_token_create_command)
    _register_backup(verbs)


def _register_backup(verbs: argparse._SubParsersAction) -> None:
    backup = verbs.add_parser(
        "backup", help="copy the colony's databases, keys and checkpoints to one file (0600) "
        "while it serves")
    backup.add_argument("--to", required=True, metavar="FILE")
    restore = verbs.add_parser(
        "restore", help="verify a backup's audit log and checkpoints, then install it into an "
        "empty data directory (the colony stopped)")
    restore.add_argument("--from", dest="source", required=True, metavar="FILE")
    restore.add_argument("--checkpoints", default="", metavar="PATH",
                         help="live checkpoint directory or file to verify against as well "
                              "(default: the colony's checkpointDir when it holds any)")
    restore.add_argument("--public-key", default="", metavar="FILE",
                         help="pinned checkpoint public key (default: the backup's own)")
    for parser in (backup, restore):
        parser.add_argument("--data-dir", default=None)
        parser.add_argument("--database", default=None, help="the colony's PostgreSQL DSN, "
                            "env:NAME or file:PATH (default: the config's; SQLite if none)")
        parser.add_argument("--config", default=None, help="colony settings YAML (key and "
                            "checkpoint locations)")
    backup.set_defaults(func=backup_command)
    restore.set_defaults(func=restore_command)


def _replica_name(settings: config.ColonySettings) -> str:
    """This replica's name (a colony on PostgreSQL): its row, and its checkpoints' name."""
    from coral_lib.colony import replication

    return settings.replica_name or replication.default_name(settings.listen)


def _settings(args: argparse.Namespace) -> config.ColonySettings:
    from coral_lib import config

    settings = config.load_colony_config(getattr(args, "config", None))
    updates = {k: v for k, v in (("data_dir", args.data_dir),
                                 ("listen", getattr(args, "listen", None)),
                                 ("policy_file", getattr(args, "policy", None)),
                                 ("observe_only", getattr(args, "observe_only", None)),
                                 ("database", getattr(args, "database", None)),
                                 ("replica_name", getattr(args, "replica_name", None)),
                                 ("replica_listen", getattr(args, "replica_listen", None)),
                                 ("replica_advertise", getattr(args, "replica_advertise", None)),
                                 ("token_review_kubeconfig",
                                  getattr(args, "token_review_kubeconfig", None)),
                                 ("token_review_in_cluster",
                                  getattr(args, "token_review_in_cluster", None))) if v}
    ttl = getattr(args, "agent_cert_ttl", None)
    if ttl:
        try:
            updates["agent_cert_ttl"] = durations.parse_duration(ttl)
        except ValueError as exc:
            raise config.ConfigError("--agent-cert-ttl", "agentCertTtl", str(exc)) from None
    return settings.model_copy(update=updates)


def _initialise(settings: config.ColonySettings, *, hostnames: tuple[str, ...] = ()):
    """What `coral colony init` makes (pki.ColonyFiles): CA, certificates, id, admin token,
    and the audit and checkpoint keys, so copies of this directory (colony replicas) share
    them; replicas never make a checkpoint key of their own."""
    from coral_lib.colony import audit, checkpoints, pki

    files = pki.ensure(settings.data_dir, hostnames=hostnames)
    keys = checkpoints.Options(audit_key_file=settings.audit_key_file,
                               key_file=settings.checkpoint_key_file)
    audit.load_key(keys.audit_key(files.data_dir))
    checkpoints.load_signing_key(keys.signing_key(files.data_dir))
    return files


def init_command(args: argparse.Namespace) -> int:
    from coral_lib import config

    try:
        settings = _settings(args)
        common.print_json(_initialise(settings, hostnames=tuple(args.hostname)).summary())
    except config.ConfigError as exc:
        return common.fail(str(exc), 2)
    except (OSError, ValueError) as exc:
        return common.fail(f"cannot create colony data directory: {exc}")
    return 0


def _reviewer(settings: config.ColonySettings):
    """The TokenReview client for Kubernetes agents' bootstrap, or None (refused)."""
    if not (settings.token_review_kubeconfig or settings.token_review_in_cluster):
        return None
    tokenreview = importlib.import_module("coral_lib.colony.tokenreview")
    return tokenreview.TokenReviewer(kubeconfig=settings.token_review_kubeconfig or None,
                                     audience=settings.token_review_audience)


def start_command(args: argparse.Namespace) -> int:
    from coral_lib import config
    from coral_lib.colony import (
        audit,
        checkpoints,
        dsn,
        enrollment,
        policy,
        rbac,
        registry,
        replication,
        server,
    )

    try:
        settings = _settings(args)
        database = dsn.resolve(settings.database)
    except (config.ConfigError, dsn.DsnError) as exc:
        return common.fail(str(exc), 2)
    try:
        if not (pathlib.Path(settings.data_dir) / "colony.id").exists():
            _initialise(settings)  # a first start on an empty directory is its `init`
        state = server.open_state(
            database=database or "",
            data_dir=settings.data_dir, colony_id="" if settings.id == "default" else settings.id,
            tokens_file=settings.tokens_file, agent_cert_ttl=settings.agent_cert_ttl,
            agent_service_account=settings.agent_service_account,
            reviewer=_reviewer(settings),
            heartbeat_interval=settings.heartbeat_interval,
            degraded_after=settings.degraded_after, unhealthy_after=settings.unhealthy_after,
            agent_expiry=settings.agent_expiry,
            settings=policy.load_settings(
                settings.policy_file or None, observe_only=settings.observe_only,
                observe_only_agents=settings.observe_only_agents,
                rate_limits=settings.rate_limits, approval_ttl=settings.approval_ttl),
            limits=_limits(settings),
            audit_options=checkpoints.Options(
                audit_key_file=settings.audit_key_file, key_file=settings.checkpoint_key_file,
                directory=settings.checkpoint_dir, syslog=settings.checkpoint_syslog,
                every=settings.checkpoint_every, interval=settings.checkpoint_interval,
                append_only=settings.checkpoint_append_only,
                replica=_replica_name(settings) if database else ""),
        )
    except (config.ConfigError, rbac.PolicyError) as exc:
        return common.fail(str(exc), 2)
    except (OSError, ValueError, registry.RegistryError, audit.AuditError,
            enrollment.Refused, ImportError) as exc:
        return common.fail(f"colony cannot start: {exc}")
    if database:
        try:
            replication.attach(
                state, database=database,
                name=_replica_name(settings),
                listen=settings.replica_listen or
                f"{settings.listen.rpartition(':')[0]}:0",
                advertise=settings.replica_advertise, interval=settings.replica_heartbeat,
                dead_after=settings.replica_dead_after)
        except (OSError, ValueError, sqlite3.Error) as exc:
            state.close()
            return common.fail(f"colony replica cannot start: {exc}")
    with contextlib.suppress(OSError):  # the admin token never reaches a log line
        logs.known((pathlib.Path(settings.data_dir) / "admin.token").read_text().strip())
    try:
        colony = server.ColonyServer(state, listen=settings.listen,
                                     mtls_listen=args.mtls_listen).start()
    except (OSError, RuntimeError) as exc:
        state.close()
        return common.fail(f"colony cannot listen on {settings.listen}: {exc}")
    _settle_gc()
    try:
        endpoints = _serve_health(args, colony)
    except ValueError as exc:  # endpoint.ListenError
        colony.stop()
        return common.fail(str(exc), 2)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    log.info("colony stopping")
    for served in endpoints:
        served.stop()
    colony.stop()
    return 0


# Young-generation threshold once the colony serves (CPython's default is 700). A full
# collection of the colony's heap took 25-55 ms of CPU, always inside whichever call
# allocated last: ListServices pages (thousands of messages each) were that call about
# once in 150 at 600 agents, and the collection grows with every linked agent (the p99
# of issue 11's bench). Measured on 1,800 pages: 4 full collections with the startup
# objects frozen, none with this threshold as well.
GC_YOUNG_THRESHOLD = 20_000


def _settle_gc() -> None:
    """Freeze what start-up made (modules, descriptors, keys, stores: alive until exit)
    so no collection scans it again, and collect young objects less often."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


def _serve_health(args: argparse.Namespace, colony) -> list:
    """The --metrics-listen endpoint (metrics and health), when asked for."""
    if not args.metrics_listen:
        return []
    from coral_lib import endpoint
    from coral_lib.colony import health

    served = endpoint.serve([("--metrics-listen", args.metrics_listen,
                              health.routes(colony, colony.state.metrics))])
    log.info("metrics and health on http://%s (/metrics, /healthz, /readyz)",
             args.metrics_listen)
    return served


def _limits(settings: config.ColonySettings) -> guard.Limits:
    from coral_lib import config
    from coral_lib.colony import guard

    try:
        return guard.Limits(**settings.limits.model_dump(exclude_none=True))
    except ValueError as exc:
        raise config.ConfigError(settings._source, "limits", str(exc)) from None


def token_add_command(args: argparse.Namespace) -> int:
    """Restart the colony (or start it) to load the new token."""
    from coral_lib import config
    from coral_lib.colony import pki, policy

    try:
        settings = _settings(args)
        files = pki.ensure(settings.data_dir)
        token = policy.add_token(settings.tokens_file or files.tokens,
                                 identity=args.identity, groups=args.group)
    except config.ConfigError as exc:
        return common.fail(str(exc), 2)
    except (OSError, ValueError) as exc:
        return common.fail(f"cannot add the token: {exc}")
    print(token)
    return 0


def join_token_create_command(args: argparse.Namespace) -> int:
    """Asks the running colony (verb admin), which stores the token hashed and audits it."""
    try:
        ttl = durations.parse_duration(args.ttl)
    except ValueError as exc:
        return common.fail(f"--ttl {args.ttl!r}: {exc}", 2)
    try:
        with common.connect(args) as colony:
            row = colony.create_join_token(args.agent_id, ttl=ttl)
    except client.CoralError as exc:
        return common.fail(str(exc))
    if args.output == "json":
        common.print_json(row)
    else:
        print(row["token"])
    return 0


def _layout(args: argparse.Namespace):
    from coral_lib import config
    from coral_lib.colony import backup, checkpoints, dsn

    settings = _settings(args)
    try:  # PostgreSQL: backup pg_dumps the tables, restore pg_restores into this database
        database = dsn.resolve(settings.database)
    except dsn.DsnError as exc:
        raise config.ConfigError(settings._source, "database", str(exc)) from None
    return backup.Layout.of(settings.data_dir, checkpoints.Options(
        audit_key_file=settings.audit_key_file, key_file=settings.checkpoint_key_file,
        directory=settings.checkpoint_dir), database)


def backup_command(args: argparse.Namespace) -> int:
    from coral_lib import config
    from coral_lib.colony import backup

    try:
        manifest = backup.backup(_layout(args), args.to)
    except config.ConfigError as exc:
        return common.fail(str(exc), 2)
    except (backup.BackupError, OSError) as exc:
        return common.fail(f"backup not written: {exc}")
    common.print_json({"file": args.to, **{k: v for k, v in manifest.items() if k != "files"},
                       "files": sorted(manifest["files"])})
    return 0


def restore_command(args: argparse.Namespace) -> int:
    from coral_lib import config
    from coral_lib.colony import backup

    try:
        restored = backup.restore(args.source, _layout(args),
                                  checkpoints_path=args.checkpoints or None,
                                  public_key_file=args.public_key or None)
    except config.ConfigError as exc:
        return common.fail(str(exc), 2)
    except backup.RestoreRefused as exc:
        common.print_json(exc.report.as_dict())
        return common.fail(str(exc))
    except (backup.BackupError, OSError) as exc:
        return common.fail(f"nothing restored: {exc}")
    common.print_json(restored.as_dict())
    return 0
