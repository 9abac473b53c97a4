"""Issue 10, "Approvals", against a real colony process and real agents: an approved id
cannot be redeemed after its TTL, an approver's deny scope survives a restart, approval
requests are rate-limited and capped per identity, pending requests hold no server
thread, and the unknown-id error names no other ids."""

from __future__ import annotations

import time

import grpc
import pytest

from coral_lib import client
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.colony.v1 import colony_pb2, colony_pb2_grpc
from tests.security import conftest
from tests.support import coral_procs

TTL = 6.0
POLICY = f"""
groups:
  sre: [alice, bob]
approvalTTL: {TTL:g}s
approvalLimits: {{perIdentity: "30/m, burst=8", pendingPerIdentity: 4}}
rules:
  - name: admins-all
    groups: [admins]
    verbs: ["*"]
  - name: sre-read
    groups: [sre]
    verbs: [read, approve]
  - name: sre-production
    groups: [sre]
    verbs: [exec]
    scope: {{env: [production]}}
    requireApproval: true
  - name: bob-never-approves-production
    effect: deny
    identities: [bob]
    verbs: [approve]
    scope: {{env: [production]}}
  - name: carol-approves
    identities: [carol]
    verbs: [read, approve]
"""


@pytest.fixture(scope="module")
def colony(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("approvals")
    policy_file = tmp / "policy.yaml"
    policy_file.write_text(POLICY)
    colony = conftest.PolicyColony(tmp / "colony", args=("--policy", str(policy_file)))
    for identity, groups in (("alice", ["sre"]), ("bob", ["sre"]), ("carol", []),
                             ("erin", ["sre"]), ("dave", [])):
        colony.add_token(identity, *groups)
    colony.start()
    agents = conftest.start_fleet(tmp, colony)
    yield colony
    for agent in agents:
        agent.stop()
    colony.stop()


def _ask(colony, identity: str, word: str) -> str:
    with colony.client_for(identity) as c, pytest.raises(client.ApprovalPending) as info:
        c.exec(client.Targeting(service="pay"), argv=["echo", word], wait_for_approval=False)
    return info.value.approval_id


def _withdraw_all(colony, identity: str) -> None:
    with colony.client_for(identity) as c:
        for item in c.approvals():
            if item["requester"] == identity:
                c.deny(item["approval_id"])


def test_review_approved_id_is_not_redeemable_after_its_ttl(colony):
    approval_id = _ask(colony, "alice", "late")
    with colony.client_for("carol") as carol:
        assert carol.approve(approval_id)["state"] == "approved"
    time.sleep(TTL + 0.5)
    with colony.client_for("alice") as alice:
        with pytest.raises(client.PermissionDenied, match="is expired, not approved"):
            alice.exec(client.Targeting(service="pay"), argv=["echo", "late"],
                       approval_id=approval_id)
        assert not [r for r in alice.audit(kind="started") if r["approval_id"] == approval_id]


def test_review_approver_deny_scope_survives_colony_restart(colony):
    before = _ask(colony, "alice", "scoped-before")
    with colony.client_for("bob") as bob, pytest.raises(
            client.PermissionDenied, match="bob-never-approves-production"):
        bob.approve(before)
    approval_id = _ask(colony, "alice", "scoped")
    colony.stop()
    colony.start()
    with colony.client_for("bob") as bob:
        with pytest.raises(client.PermissionDenied, match="bob-never-approves-production"):
            bob.approve(approval_id)
        assert bob.approval(approval_id)["state"] == "pending"
    _withdraw_all(colony, "alice")
    # the later tests exec on these agents: let them link to the restarted colony first
    coral_procs.wait_registered(colony, ["prod-1", "stage-1"], timeout=60)


def test_review_approval_requests_are_capped_and_rate_limited_per_identity(colony):
    asked, refused = [], []
    for i in range(10):
        try:
            asked.append(_ask(colony, "erin", f"flood-{i}"))
        except client.RateLimited as exc:
            refused.append(str(exc))
    assert len(asked) == 4  # pendingPerIdentity
    assert all("already has 4 pending" in r for r in refused[:4])
    with colony.client_for("erin") as erin:
        assert len([a for a in erin.approvals() if a["requester"] == "erin"]) == 4
    # Another identity is not held back by erin's requests.
    other = _ask(colony, "alice", "not-erin")
    _withdraw_all(colony, "erin")
    _withdraw_all(colony, "alice")
    # With the pending ones withdrawn the rate limit still bounds creation (burst 8).
    more, limited = 0, None
    for i in range(10):
        try:
            _ask(colony, "erin", f"again-{i}")
            more += 1
        except client.RateLimited as exc:
            limited = exc
            if "rate limit" in str(exc):
                break
    assert limited is not None and "rate limit for identity 'erin'" in str(limited)
    assert limited.retry_after > 0 and more < 8
    _withdraw_all(colony, "erin")
    assert other


def test_review_pending_approvals_hold_no_server_thread(colony):
    """A client that asks to wait still gets its pending id and the RPC ends: waiting is
    the client's (it polls GetApproval), so 510 pending requests pin no colony threads."""
    token = colony.tokens["bob"]
    creds = grpc.ssl_channel_credentials((colony.data_dir / "ca.crt").read_bytes())
    with grpc.secure_channel(colony.address, creds) as chan:
        stub = colony_pb2_grpc.ColonyStub(chan)
        request = colony_pb2.OperateRequest(
            targeting=colony_pb2.Targeting(service="pay"), no_wait=False,
            exec=agent_pb2.ExecRequest(argv=["echo", "waiting"]))
        started = time.monotonic()
        events = list(stub.Operate(request, metadata=(("authorization", f"Bearer {token}"),),
                                   timeout=TTL - 1))
    assert [e.WhichOneof("event") for e in events] == ["pending"]
    assert time.monotonic() - started < TTL - 1
    approval_id = events[0].pending.approval_id
    # The client library still waits for the decision and then runs it once.
    with colony.client_for("carol") as carol:
        carol.approve(approval_id)
    with colony.client_for("bob") as bob:
        outcome = bob.exec(client.Targeting(service="pay"), argv=["echo", "waiting"],
                           approval_id=approval_id)
    assert outcome.results[0]["stdout"] == "waiting\n"


def test_client_still_waits_for_approval_and_runs_it_once(colony):
    seen = []
    with colony.client_for("alice") as alice:
        def approve_when_asked(pending):
            seen.append(pending.approval_id)
            with colony.client_for("carol") as carol:
                carol.approve(pending.approval_id)
        outcome = alice.exec(client.Targeting(service="pay"), argv=["echo", "approved"],
                             on_pending=approve_when_asked, approval_timeout=30)
    assert seen and outcome.results[0]["stdout"] == "approved\n"
    with colony.client_for("alice") as alice:
        denied = []
        with pytest.raises(client.PermissionDenied, match="is denied; exec not run"):
            alice.exec(client.Targeting(service="pay"), argv=["echo", "nope"],
                       on_pending=lambda p: denied.append(
                           colony.client_for("carol").deny(p.approval_id)),
                       approval_timeout=30)


def test_review_unknown_approval_id_error_leaks_no_other_ids(colony):
    pending = _ask(colony, "alice", "secret-id")
    with colony.client_for("carol") as carol:
        with pytest.raises(client.CoralError) as info:
            carol.approve("0123456789abcdef")
        assert "unknown approval id '0123456789abcdef'" in str(info.value)
        assert pending not in str(info.value)
        with pytest.raises(client.InvalidRequest, match="approval_id"):
            carol.approve("x\n" * 100)
    _withdraw_all(colony, "alice")
