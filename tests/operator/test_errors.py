"""Issue 15: "Errors are chosen from gRPC status codes and structured details, never by
matching message text; one exception root for the library"."""

from __future__ import annotations

import pathlib
import re

import grpc
import pytest

from coral_lib import client, convert, errors
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib.ops import base

ROOT = pathlib.Path(__file__).resolve().parents[2]
# the error_kind values modules return and playbooks branch on (kept stable)
STABLE_KINDS = {"CoralError", "Unreachable", "Unauthenticated", "PermissionDenied",
                "NoTargets", "InvalidRequest", "RateLimited", "ApprovalPending"}
TEXT_MATCHING = re.compile(
    r"""startswith\(\s*f?["'](refused|unknown|not run|colony|approval)"""
    r"""|["']refused:["']\s+in\b|\bin\s+str\(exc\)|details\(\)\s*(==|!=|\.startswith|"""
    r"""\.endswith)|\bin\s+\w+\.details\(\)""")


def test_errors_are_never_chosen_by_matching_message_text():
    hits = []
    for folder in ("coral_lib", "plugins"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "_proto" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if TEXT_MATCHING.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, hits


def test_refusal_status_comes_from_the_structured_flag_not_the_text():
    """An agent's `refused` flag decides the status; a message that merely starts with
    "refused:" is an error like any other."""
    flagged = agent_pb2.ExecResult(exit_code=-1, error="outside this agent's pod",
                                   refused=True)
    worded = agent_pb2.ExecResult(exit_code=-1, error="refused: just words")
    assert convert.exec_outcome(flagged) == "refused"
    assert convert.exec_outcome(worded) == "error"


def test_one_exception_root_and_stable_kinds():
    kinds = {cls.__name__ for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, Exception)}
    assert STABLE_KINDS <= kinds
    for name in STABLE_KINDS:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.CoralError) and getattr(client, name) is cls
    assert errors.NoTargets("x").kind == "NoTargets" and errors.CoralError("x").kind == "CoralError"
    assert issubclass(base.OperationError, errors.CoralError)
    assert issubclass(base.Refused, base.OperationError)
    # the colony's own refusals carry the status they are answered with as `code`
    from coral_lib.colony import approvals, audit, enrollment, policy, routing
    for cls in (approvals.ApprovalError, audit.AuditError, enrollment.Refused, policy.Refused,
                routing.NoTargets):
        assert issubclass(cls, errors.CoralError), cls
    assert approvals.ApprovalError("x", code="NOT_FOUND").code == "NOT_FOUND"
    assert policy.Refused("x", code="RESOURCE_EXHAUSTED", retry_after=2).code == \
        "RESOURCE_EXHAUSTED"
    assert routing.NoTargets("x").code == "NOT_FOUND"
    # every status the colony answers with maps to a kind by its code alone
    for name, cls in errors.BY_STATUS.items():
        assert hasattr(grpc.StatusCode, name) and cls.__name__ in STABLE_KINDS


def test_refusals_and_colony_errors_reach_operators_as_kinds_from_real_processes(host_fleet):
    """A host agent asked for a pod refuses (base.Refused -> `refused` flag -> status
    refused, TargetFailed.refused); colony answers map to kinds by status code."""
    elsewhere = client.Targeting(agent="web-1", pod="shop-1", namespace="shop")
    with host_fleet.client() as colony:
        (row,) = colony.exec(elsewhere, argv=["true"]).results
        assert row["status"] == "refused" and "host agent" in row["error"]
        failed = [e for e in colony.tap(elsewhere, duration=1)
                  if isinstance(e, client.TargetFailed)]
        assert len(failed) == 1 and failed[0].refused and "host agent" in failed[0].error
        finished = [r for r in colony.audit(kind="finished") if r.get("status") == "refused"]
        assert len(finished) == 2, finished  # exec and tap, each audited as refused

        with pytest.raises(errors.NoTargets) as unknown:
            colony.exec(client.Targeting(service="nope"), argv=["true"])
        assert unknown.value.code == "NOT_FOUND" and unknown.value.kind == "NoTargets"
        with pytest.raises(errors.InvalidRequest) as bad:
            colony.exec(client.Targeting(all=True), argv=[])
        assert bad.value.code == "INVALID_ARGUMENT"
        with pytest.raises(errors.CoralError) as stranger:
            colony.approve("a" * 32)  # an unknown approval id: the colony's code decides
        assert stranger.value.code in ("NOT_FOUND", "FAILED_PRECONDITION")
