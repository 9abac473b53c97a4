"""Approval flow with two identities: pending until another identity approves or denies,
self-approval refused, expiry, waiting across two store instances on one SQLite file."""

from __future__ import annotations

import threading
import time

import pytest

from coral_lib.colony import approvals, secrets


@pytest.fixture
def store(database, clock):
    """Every test taking `store` runs on SQLite and on PostgreSQL."""
    store = approvals.ApprovalStore(database("approvals.db"), clock=clock)
    yield store
    store.close()


def _ask(store: approvals.ApprovalStore, ttl: float = 300.0) -> str:
    return store.request(requester="alice", verb="exec", target="env=production service=api",
                         command="systemctl restart api", ttl=ttl)


def test_approval_flow_two_identities(store: approvals.ApprovalStore) -> None:
    approval_id = _ask(store)
    pending = store.pending()
    assert [a.id for a in pending] == [approval_id]
    assert pending[0].state == "pending" and pending[0].requester == "alice"
    approved = store.approve(approval_id, approver="bob")
    assert (approved.state, approved.decided_by) == ("approved", "bob")
    assert store.get(approval_id).state == "approved"
    assert store.pending() == []


def test_self_approval_refused(store: approvals.ApprovalStore) -> None:
    approval_id = _ask(store)
    with pytest.raises(approvals.ApprovalError,
                       match="alice cannot approve their own request .*different identity"):
        store.approve(approval_id, approver="alice")
    assert store.get(approval_id).state == "pending"


def test_requester_may_withdraw_by_denying(store: approvals.ApprovalStore) -> None:
    approval_id = _ask(store)
    assert store.deny(approval_id, approver="alice").state == "denied"


def test_denied_request_cannot_then_be_approved(store: approvals.ApprovalStore) -> None:
    approval_id = _ask(store)
    store.deny(approval_id, approver="carol")
    with pytest.raises(approvals.ApprovalError, match="already denied by carol"):
        store.approve(approval_id, approver="bob")


def test_pending_request_expires(store: approvals.ApprovalStore, clock) -> None:
    approval_id = _ask(store, ttl=60.0)
    clock.advance(59.0)
    assert store.get(approval_id).state == "pending"
    clock.advance(1.0)
    assert store.get(approval_id).state == "expired"
    assert store.pending() == []
    with pytest.raises(approvals.ApprovalError, match="expired 0s ago without a decision"):
        store.approve(approval_id, approver="bob")


def test_unknown_id_names_no_other_ids(store: approvals.ApprovalStore) -> None:
    approval_id = _ask(store)
    with pytest.raises(approvals.ApprovalError, match="unknown approval id 'nope'") as info:
        store.approve("nope", approver="bob")
    assert approval_id not in str(info.value) and info.value.code == "NOT_FOUND"


def test_errors_carry_their_status_code(store: approvals.ApprovalStore) -> None:
    approval_id = _ask(store)
    with pytest.raises(approvals.ApprovalError) as own:
        store.approve(approval_id, approver="alice")
    assert own.value.code == "PERMISSION_DENIED"
    store.deny(approval_id, approver="bob")
    with pytest.raises(approvals.ApprovalError) as decided:
        store.approve(approval_id, approver="bob")
    assert decided.value.code == "FAILED_PRECONDITION"


def test_approved_but_unused_expires_at_its_ttl(store: approvals.ApprovalStore, clock) -> None:
    approval_id = _ask(store, ttl=60.0)
    store.approve(approval_id, approver="bob")
    clock.advance(60.0)
    with pytest.raises(approvals.ApprovalError, match="is expired, not approved"):
        store.redeem(approval_id, requester="alice", verb="exec",
                     target="env=production service=api", command="systemctl restart api")


def test_pending_requests_per_identity_are_capped(store: approvals.ApprovalStore) -> None:
    for _ in range(3):
        store.request(requester="alice", verb="exec", target="t", command="c", ttl=60,
                      max_pending=3)
    with pytest.raises(approvals.ApprovalError, match="already has 3 pending") as info:
        store.request(requester="alice", verb="exec", target="t", command="c", ttl=60,
                      max_pending=3)
    assert info.value.code == "RESOURCE_EXHAUSTED"
    store.request(requester="bob", verb="exec", target="t", command="c", ttl=60, max_pending=3)


def test_scope_is_stored_and_old_stores_gain_the_column(tmp_path) -> None:
    import sqlite3
    path = tmp_path / "approvals.db"
    old = sqlite3.connect(path)  # the schema before scopes were kept
    old.execute("CREATE TABLE approvals (id TEXT PRIMARY KEY, requester TEXT NOT NULL, "
                "verb TEXT NOT NULL, target TEXT NOT NULL, command TEXT NOT NULL, "
                "state TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL, "
                "decided_by TEXT NOT NULL DEFAULT '', decided_at REAL, redeemed_at REAL)")
    old.execute("INSERT INTO approvals VALUES ('a1', 'alice', 'exec', 't', 'c', 'pending', "
                "0, 1e12, '', NULL, NULL)")
    old.commit()
    old.close()
    store = approvals.ApprovalStore(path)
    assert store.get("a1").scope == ""
    new = store.request(requester="alice", verb="exec", target="t", command="c", ttl=60,
                        scope='[{"labels": {"env": "production"}}]')
    store.close()
    again = approvals.ApprovalStore(path)
    assert again.get(new).scope == '[{"labels": {"env": "production"}}]'
    again.close()


def test_bad_ttl_and_missing_requester(store: approvals.ApprovalStore) -> None:
    with pytest.raises(approvals.ApprovalError, match="ttl must be a positive"):
        _ask(store, ttl=0)
    with pytest.raises(approvals.ApprovalError, match="requester"):
        store.request(requester="", verb="exec", target="t", command="c", ttl=5)


def test_wait_wakes_when_another_store_on_the_same_file_approves(database) -> None:
    """The colony waits; `coral approve` (another connection, maybe another process) decides."""
    path = database("approvals.db")
    colony = approvals.ApprovalStore(path)
    approval_id = colony.request(requester="alice", verb="exec", target="t", command="id",
                                 ttl=30)
    result: list[approvals.Approval] = []
    waiter = threading.Thread(target=lambda: result.append(colony.wait(approval_id, 10.0)))
    waiter.start()
    time.sleep(0.3)
    operator = approvals.ApprovalStore(path)
    operator.approve(approval_id, approver="bob")
    operator.close()
    waiter.join(10)
    # Had the wait run out its 10 s instead of waking, the state would still be pending.
    assert result and result[0].state == "approved" and result[0].decided_by == "bob"
    colony.close()


def test_wait_returns_pending_after_timeout_and_expired_after_ttl(database) -> None:
    store = approvals.ApprovalStore(database("approvals.db"))
    short = store.request(requester="alice", verb="exec", target="t", command="id", ttl=0.3)
    assert store.wait(short, 0.05).state == "pending"
    assert store.wait(short, 5.0).state == "expired"
    store.close()


def test_redeem_once_for_exactly_what_was_approved(store: approvals.ApprovalStore) -> None:
    approval_id = _ask(store)
    args = dict(requester="alice", verb="exec", target="env=production service=api",
                command="systemctl restart api")
    with pytest.raises(approvals.ApprovalError, match="is pending, not approved"):
        store.redeem(approval_id, **args)
    store.approve(approval_id, approver="bob")
    with pytest.raises(approvals.ApprovalError, match="does not cover this request"):
        store.redeem(approval_id, **(args | {"command": "rm -rf /"}))
    assert store.redeem(approval_id, **args).redeemed_at is not None
    with pytest.raises(approvals.ApprovalError, match="already used"):
        store.redeem(approval_id, **args)


def test_secrets_in_commands_are_not_stored(tmp_path) -> None:
    secrets.register("sup3r-s3cret-value")
    try:
        store = approvals.ApprovalStore(tmp_path / "approvals.db")
        approval_id = store.request(requester="alice", verb="exec", target="t",
                                    command="login --key sup3r-s3cret-value", ttl=30)
        assert "sup3r" not in store.get(approval_id).command
        store.close()
        raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
        assert b"sup3r-s3cret-value" not in raw
    finally:
        secrets.forget("sup3r-s3cret-value")


def test_pending_survives_restart(database, clock) -> None:
    path = database("approvals.db")
    first = approvals.ApprovalStore(path, clock=clock)
    approval_id = _ask(first)
    first.close()
    second = approvals.ApprovalStore(path, clock=clock)
    assert [a.id for a in second.pending()] == [approval_id]
    second.close()
