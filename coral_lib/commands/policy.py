"""`coral policy check FILE`: validate a colony policy file the way `colony start` does."""

from __future__ import annotations

import argparse

from coral_lib.commands import common


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("policy", help="colony RBAC / approval / rate-limit policy")
    verbs = parser.add_subparsers(dest="policy_command", metavar="VERB")
    check = verbs.add_parser("check", help="validate a policy file; exit 2 naming the bad rule")
    check.add_argument("file")
    check.set_defaults(func=check_command)


def check_command(args: argparse.Namespace) -> int:
    from coral_lib.colony import policy, rbac

    try:
        settings = policy.load_settings(args.file)
    except rbac.PolicyError as exc:
        return common.fail(str(exc), 2)
    rules = settings.policy.rules
    common.print_json({
        "file": settings.source, "rules": [r.name for r in rules],
        "approval_rules": [r.name for r in rules if r.require_approval],
        "observe_only": settings.policy.observe_only,
        "observe_only_agents": sorted(settings.policy.observe_only_agents),
        "rate_limits": {k: f"{r.per_second:g}/s, burst={r.burst}" for k, r in
                        (("perIdentity", settings.per_identity),
                         ("perTarget", settings.per_target)) if r},
        "approval_ttl_seconds": settings.approval_ttl,
    })
    return 0
