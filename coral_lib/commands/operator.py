"""Operator commands: `coral agents`, `coral services`, `coral exec`, `coral audit`."""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from coral_lib import client, durations, selection, validate
from coral_lib.commands import approve, common
from coral_lib.operator import targeting as targeting_mod

# coral_lib.colony.audit/checkpoints (cryptography) load only in the audit commands.

SERVICES_LIMIT = 1000  # `coral services` shows this many unless --limit says otherwise


def register(sub: argparse._SubParsersAction) -> None:
    agents = sub.add_parser("agents", help="list registered agents")
    agents.add_argument("--node", default=None)
    _output_arg(agents)
    common.add_connection_args(agents)
    agents.set_defaults(func=agents_command)
    agent_verbs = agents.add_subparsers(dest="agents_command", metavar="VERB")
    revoke = agent_verbs.add_parser(
        "revoke", help="refuse an agent's certificates from its next call on (verb admin)")
    revoke.add_argument("agent_id", metavar="ID")
    common.add_connection_args(revoke)
    revoke.set_defaults(func=revoke_command)
    prune = agent_verbs.add_parser(
        "prune", help="remove agents without a link, unseen longer than --older-than, and "
        "their services (verb admin)")
    prune.add_argument("--older-than", default="0",
                       help="a duration such as 10m (default: the colony's agentExpiry)")
    prune.add_argument("--dry-run", action="store_true", help="list them, remove nothing")
    common.add_connection_args(prune)
    prune.set_defaults(func=prune_command)

    services = sub.add_parser("services", help="list registered services")
    services.add_argument("--name", default=None)
    services.add_argument("--label", action="append", default=[], metavar="K=V")
    services.add_argument("--provenance", default=None,
                          help="explicit | discovered | overridden")
    services.add_argument("--agent", default=None)
    services.add_argument("--node", default=None)
    services.add_argument("-n", "--namespace", default=None)
    services.add_argument("--limit", type=int, default=SERVICES_LIMIT, metavar="N",
                          help=f"show at most N services (default {SERVICES_LIMIT}; 0: all)")
    _output_arg(services)
    common.add_connection_args(services)
    services.set_defaults(func=services_command)

    exe = sub.add_parser("exec", help="run a command on the selected targets")
    add_targeting_args(exe)
    exe.add_argument("--timeout", type=float, default=30.0, help="seconds per target")
    exe.add_argument("--shell", action="store_true", help="run the command through /bin/sh -c")
    exe.add_argument("--max-concurrency", type=int, default=0)
    exe.add_argument("--approval-id", default="", help="run what this approved request allowed")
    exe.add_argument("--no-wait", action="store_true",
                     help="when approval is needed, print its id and exit 3 instead of waiting")
    _output_arg(exe)
    common.add_connection_args(exe)
    exe.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD...")
    exe.set_defaults(func=exec_command)

    audit = sub.add_parser("audit", help="read and verify the audit log")
    verbs = audit.add_subparsers(dest="audit_command", metavar="VERB")
    listing = verbs.add_parser("list", help="audit records, oldest first")
    listing.add_argument("--kind", default=None)
    listing.add_argument("--requester", default=None)
    listing.add_argument("--agent", default=None)
    listing.add_argument("--op-id", default=None)
    listing.add_argument("--since", type=float, default=None, help="unix time")
    listing.add_argument("--limit", type=int, default=1000)
    listing.add_argument("--tail", action="store_true", help="the newest --limit records")
    _output_arg(listing)
    common.add_connection_args(listing)
    listing.set_defaults(func=audit_list_command)
    export = verbs.add_parser("export", help="every matching record as JSON lines")
    for flag in ("--kind", "--requester", "--agent", "--op-id"):
        export.add_argument(flag, default=None)
    export.add_argument("--since", type=float, default=None, help="unix time")
    export.add_argument("-o", "--output", default="-", help="file (default: stdout)")
    common.add_connection_args(export)
    export.set_defaults(func=audit_export_command)
    verify = verbs.add_parser(
        "verify", help="check the HMAC chain of the audit log (through the colony); with "
        "--checkpoints, check the database files locally against signed checkpoints")
    local = verify.add_argument_group(
        "local verification against checkpoints (reads the data directory's files)")
    local.add_argument("--checkpoints", action="append", default=[], metavar="PATH",
                       help="checkpoint directory or file (JSON lines or syslog lines); "
                            "repeat it for each replica's sink of a colony on PostgreSQL")
    local.add_argument("--public-key", action="append", default=[], metavar="FILE",
                       help="checkpoint public key (default: DATA_DIR/checkpoint.pub; pin a "
                            "copy kept off the colony host); repeat it for replicas that "
                            "each sign with a key of their own")
    local.add_argument("--data-dir", default="", help="the colony's data directory "
                       "(default: CORAL_COLONY_DATA_DIR or the local colony's)")
    local.add_argument("--audit-key", default="", metavar="FILE",
                       help="audit HMAC key (default: DATA_DIR/audit.key)")
    local.add_argument("--database", default="", help="a PostgreSQL colony's DSN, env:NAME "
                       "or file:PATH (default: DATA_DIR/audit.db)")
    common.add_connection_args(verify)
    verify.set_defaults(func=audit_verify_command)


def _output_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")


def add_targeting_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("targets (combine to narrow)")
    group.add_argument("--service", default=None)
    group.add_argument("--agent", default=None)
    group.add_argument("--selector", action="append", default=[], metavar="K=V")
    group.add_argument("--all", action="store_true",
                       help="every registered agent (on a DaemonSet agent: every pod it sees)")
    group.add_argument("--pod", default=None,
                       help="a pod, with or without a service if a DaemonSet agent sees it")
    group.add_argument("-n", "--namespace", default=None,
                       help="narrows; alone, every service and pod in the namespace")
    group.add_argument("-c", "--container", default=None)
    group.add_argument("--node", default=None)


def labels_arg(values: list[str], flag: str) -> dict[str, str]:
    return targeting_mod.parse_labels(values, flag=flag)


def targeting_from_args(args: argparse.Namespace) -> client.Targeting:
    """The targeting flags through the one builder (coral_lib.operator.targeting)."""
    return targeting_mod.build(
        service=args.service, agent=args.agent, selector=labels_arg(args.selector, "--selector"),
        all=args.all, pod=args.pod, namespace=args.namespace, container=args.container,
        node=args.node,
    )


def _run(action) -> int:
    try:
        return action()
    except client.ApprovalPending as exc:
        print(exc.approval_id)
        return 3
    except client.CoralError as exc:
        return common.fail(str(exc))


def agents_command(args: argparse.Namespace) -> int:
    def action() -> int:
        with common.connect(args) as colony:
            rows = colony.list_agents(node=args.node)
        if args.output == "json":
            common.print_json(rows)
        else:
            common.print_table(rows, ["agent_id", "status", "connected", "runtime_mode",
                                      "node_name", "service_count", "version"])
        return 0
    return _run(action)


def revoke_command(args: argparse.Namespace) -> int:
    def action() -> int:
        with common.connect(args) as colony:
            row = colony.revoke_agent(args.agent_id)
        common.print_json(row)
        return 0
    return _run(action)


def prune_command(args: argparse.Namespace) -> int:
    try:
        older_than = durations.parse_duration(args.older_than)
    except ValueError as exc:
        return common.fail(f"--older-than {args.older_than!r}: {exc}", 2)

    def action() -> int:
        with common.connect(args) as colony:
            ids = colony.prune_agents(older_than=float(older_than), dry_run=args.dry_run)
        common.print_json({"pruned" if not args.dry_run else "would_prune": ids})
        return 0
    return _run(action)


def services_command(args: argparse.Namespace) -> int:
    def action() -> int:
        with common.connect(args) as colony:
            if args.limit < 0:
                return common.fail(f"--limit {args.limit}: expected 0 (all) or a positive "
                                   "number", 2)
            rows = colony.list_services(
                name=args.name, labels=labels_arg(args.label, "--label"),
                provenance=args.provenance, agent=args.agent, node=args.node,
                namespace=args.namespace, limit=args.limit + 1 if args.limit else None)
            if args.limit and len(rows) > args.limit:
                rows = rows[:args.limit]
                print(f"coral: showing the first {args.limit} services; more match "
                      "(narrow the filters, or --limit 0 for all)", file=sys.stderr)
            if not rows and args.name:  # close names among the first pages, not all
                known = [s["component_name"] for s in colony.list_services(limit=10_000)]
                close = selection.close_matches(args.name, known)
                hint = f"; did you mean: {', '.join(close)}" if close else ""
                return common.fail(f"unknown service {args.name!r}{hint}")
        if args.output == "json":
            common.print_json(rows)
        else:
            for row in rows:
                row["health_state"] = row["health"]["state"]
            common.print_table(rows, ["component_name", "port", "provenance", "agent",
                                      "namespace", "pod_name", "service_type",
                                      "health_endpoint", "health_state"])
        return 0
    return _run(action)


def exec_command(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        return common.fail("no command given: coral exec --service S -- CMD...", 2)

    def action() -> int:
        targeting = targeting_from_args(args)
        with common.connect(args) as colony:
            outcome = colony.exec(targeting, argv=argv, shell=args.shell, timeout=args.timeout,
                                  max_concurrency=args.max_concurrency,
                                  approval_id=args.approval_id,
                                  wait_for_approval=not args.no_wait,
                                  on_pending=approve.print_pending)
        if args.output == "json":
            common.print_json({"results": outcome.results, "audit_ids": outcome.audit_ids})
        else:
            for row in outcome.results:
                _print_result(row)
        return 1 if outcome.failed else 0
    return _run(action)


def _print_result(row: dict) -> None:
    where = "/".join(p for p in (row["namespace"], row["pod"], row["container"]) if p)
    name = f"{row['agent']}{' ' + where if where else ''}"
    status = row["error"] or f"exit {row['rc']}"
    flags = " (output truncated)" if row["truncated"] else ""
    print(validate.printable(f"=== {name} [{row['service'] or '-'}]: {status}{flags}"))
    if row["stdout"]:
        sys.stdout.write(row["stdout"] if row["stdout"].endswith("\n") else row["stdout"] + "\n")
    if row["stderr"]:
        sys.stderr.write(row["stderr"] if row["stderr"].endswith("\n") else row["stderr"] + "\n")


def audit_list_command(args: argparse.Namespace) -> int:
    def action() -> int:
        with common.connect(args) as colony:
            rows = colony.audit(kind=args.kind, requester=args.requester, agent=args.agent,
                                limit=args.limit, op_id=args.op_id, since=args.since,
                                tail=args.tail)
        if args.output == "json":
            common.print_json(rows)
        else:
            common.print_table([audit_row(r) for r in rows],
                               ["id", "time", "kind", "requester", "agent", "what", "status"])
        return 0
    return _run(action)


def audit_row(record: dict) -> dict:
    """One line per audit record for the table: what happened, in a few words. Pure."""
    kind = record.get("kind", "")
    service = record.get("service")
    if kind == "discovery" and isinstance(service, dict):
        prov = str(service.get("provenance", "")).removeprefix("SERVICE_PROVENANCE_").lower()
        what = (f"{record.get('event', '')} {service.get('component_name', '')}:"
                f"{service.get('port', '')} ({prov})")
    elif kind == "discovery":  # one record per registration (colony.discovery_record)
        from coral_lib.colony import discovery_record

        counts = [f"{len(record.get(e) or ())} {e}" for e in discovery_record.EVENTS
                  if record.get(e)]
        what = f"{', '.join(counts)}; {record.get('services', 0)} services now"
    elif kind == "refused":
        what = f"{record.get('verb', '')} {record.get('target', '')}: {record.get('reason', '')}"
    elif kind == "finished":
        what = record.get("op_id", "")
    elif kind == "entered":
        where = "/".join(str(record.get(k)) for k in ("namespace", "pod", "container")
                         if record.get(k))
        what = " ".join(p for p in ("entered", str(record.get("node") or ""), where,
                                    f"({record.get('resolved_by') or '?'})") if p)
    elif kind == "agent":  # lifecycle: deregistered, expired, pruned
        what = f"{record.get('event', '')} {record.get('by', '')}".strip()
    elif kind == "identity":  # agent enrollment: join token created, joined, renewed, revoked
        by = record.get("by") or record.get("peer") or ""
        what = f"{record.get('event', '')} {by}".strip()
    else:
        what = " ".join(str(record.get(k) or "") for k in ("verb", "command")).strip()
    status = record.get("status") or ""
    if kind == "finished" and record.get("exit_code") is not None:
        status = f"{status} rc={record['exit_code']}"
    return {"id": record.get("id", ""), "kind": kind, "status": status,
            "time": time.strftime("%H:%M:%S", time.localtime(record.get("ts", 0))),
            "requester": record.get("requester", ""), "agent": record.get("agent_id", ""),
            "what": what[:100]}


def audit_verify_command(args: argparse.Namespace) -> int:
    if args.checkpoints:
        return audit_verify_local(args)

    def action() -> int:
        with common.connect(args) as colony:
            result = colony.verify_audit()
        common.print_json(result)
        return 0 if result.get("ok") else 1
    return _run(action)


def audit_verify_local(args: argparse.Namespace) -> int:
    """Verify audit.db with the HMAC key and the checkpoints, without the colony running."""
    from coral_lib.colony import audit, audit_check, dsn

    data_dir = pathlib.Path(args.data_dir) if args.data_dir else common.default_data_dir()
    try:
        database = dsn.resolve(args.database)
    except dsn.DsnError as exc:
        return common.fail(f"--database: {exc}", 2)
    try:
        report = audit_check.verify_local(
            audit_db=database or data_dir / "audit.db",
            audit_key_file=args.audit_key or data_dir / "audit.key",
            public_key_file=args.public_key or [data_dir / "checkpoint.pub"],
            checkpoints_path=args.checkpoints)
    except (OSError, ValueError, audit.AuditError) as exc:
        return common.fail(f"cannot verify the audit log: {exc}")
    common.print_json(report.as_dict())
    return 0 if report.ok else 1


def audit_export_command(args: argparse.Namespace) -> int:
    from coral_lib.colony import audit

    def action() -> int:
        with common.connect(args) as colony:
            records = colony.audit_records(kind=args.kind, requester=args.requester,
                                           agent=args.agent, op_id=args.op_id, since=args.since)
            if args.output == "-":
                count = audit.export_jsonl(records, sys.stdout)
            else:
                count = approve.write_atomic(args.output, lambda f: audit.export_jsonl(records, f))
        print(f"exported {count} records", file=sys.stderr)
        return 0
    return _run(action)
