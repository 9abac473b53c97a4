"""Approvals: a request held until a different identity approves (or anyone denies) it.

States: pending -> approved | denied | expired. A request expires `ttl` seconds after it
was made: pending ones, and approved ones not yet redeemed (the TTL bounds redemption
too). The requester cannot approve their own request; they may deny
(withdraw) it. An approved request is redeemed once by the operation it allowed
(`redeem`), which checks that requester, verb, target and command are the ones approved.

SQLite-backed (one file, WAL) so pending requests survive a colony restart and
`coral approve` in another process sees the same state, and so does the scope an approver
is checked against (`scope`, opaque JSON from the gate). Commands are scrubbed of secrets
before they are stored or shown to approvers. Each requester holds at most `max_pending`
pending requests. Errors carry a gRPC status name in `code`; an unknown id names no others.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable

from coral_lib import errors
from coral_lib.colony import secrets, storage

STATES = ("pending", "approved", "denied", "expired")
POLL = 0.2  # seconds between looks at the file while waiting (another process may decide)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    verb TEXT NOT NULL,
    target TEXT NOT NULL,
    command TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    decided_by TEXT NOT NULL DEFAULT '',
    decided_at REAL,
    redeemed_at REAL,
    scope TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS approvals_state ON approvals (state);
"""
_COLUMNS = ("id, requester, verb, target, command, state, created_at, expires_at, "
            "decided_by, decided_at, redeemed_at, scope")


class ApprovalError(errors.CoralError):
    """An approval action was refused (unknown id, self-approval, expired, decided).
    `code` is the gRPC status name to answer with."""

    def __init__(self, message: str, *, code: str = "FAILED_PRECONDITION") -> None:
        super().__init__(message, code=code)


@dataclasses.dataclass(frozen=True)
class Approval:
    id: str
    requester: str
    verb: str
    target: str
    command: str
    state: str
    created_at: float
    expires_at: float
    decided_by: str = ""
    decided_at: float | None = None
    redeemed_at: float | None = None
    scope: str = ""


class ApprovalStore:
    """Pending approvals in their own SQLite file; thread-safe."""

    def __init__(self, path: str | os.PathLike, *, clock: Callable[[], float] = time.time) -> None:
        self.path = os.fspath(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        try:
            self._db = storage.connect(self.path, store="approvals")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(approvals)")}
            if "scope" not in columns:  # a store written before scopes were kept
                self._db.execute("ALTER TABLE approvals ADD COLUMN scope TEXT NOT NULL "
                                 "DEFAULT ''")
        except sqlite3.Error as exc:
            raise ApprovalError(f"cannot open the approvals store {self.path}: {exc}") from exc

    def request(self, *, requester: str, verb: str, target: str, command: str,
                ttl: float, scope: str = "", max_pending: int = 0) -> str:
        """Record a pending request; return its approval id. With `max_pending`, a
        requester who already has that many pending is refused (RESOURCE_EXHAUSTED)."""
        if not requester:
            raise ApprovalError("an approval request needs the requester's identity")
        if not ttl > 0:
            raise ApprovalError(f"approval ttl must be a positive number of seconds, got {ttl}")
        approval_id = uuid.uuid4().hex[:16]
        now = self._clock()
        with self._lock:
            self._expire()
            if max_pending:
                (held,) = self._run("SELECT count(*) FROM approvals WHERE state = 'pending' "
                                    "AND requester = ?", (requester,)).fetchone()
                if held >= max_pending:
                    raise ApprovalError(
                        f"{requester} already has {held} pending approval requests (at most "
                        f"{max_pending}); wait for decisions or withdraw some with "
                        "`coral deny ID`", code="RESOURCE_EXHAUSTED")
            self._run("INSERT INTO approvals (id, requester, verb, target, command, state, "
                      "created_at, expires_at, scope) "
                      "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                      (approval_id, requester, verb, secrets.scrub_text(target),
                       secrets.scrub_text(command), now, now + ttl, scope))
        return approval_id

    def approve(self, approval_id: str, *, approver: str) -> Approval:
        """Approve a pending request; refuses self-approval, unknown and expired ids."""
        return self._decide(approval_id, approver=approver, state="approved")

    def deny(self, approval_id: str, *, approver: str) -> Approval:
        """Deny a pending request (the requester may deny their own: a withdrawal)."""
        return self._decide(approval_id, approver=approver, state="denied")

    def get(self, approval_id: str) -> Approval:
        with self._lock:
            self._expire()
            return self._load(approval_id)

    def pending(self) -> list[Approval]:
        """Pending requests, oldest first."""
        with self._lock:
            self._expire()
            rows = self._run(f"SELECT {_COLUMNS} FROM approvals WHERE state = 'pending' "
                             "ORDER BY created_at, id").fetchall()
        return [Approval(*row) for row in rows]

    def wait(self, approval_id: str, timeout: float) -> Approval:
        """Block until the request is decided or expired, or `timeout` seconds pass
        (then it is returned still pending)."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            while True:
                self._expire()
                approval = self._load(approval_id)
                left = deadline - time.monotonic()
                if approval.state != "pending" or left <= 0:
                    return approval
                self._changed.wait(min(POLL, left))

    def redeem(self, approval_id: str, *, requester: str, verb: str, target: str,
               command: str) -> Approval:
        """Use an approved request once, for exactly what was approved."""
        with self._lock:
            self._expire()
            approval = self._load(approval_id)
            asked = (requester, verb, secrets.scrub_text(target), secrets.scrub_text(command))
            if approval.state != "approved":
                raise ApprovalError(f"approval {approval_id} is {approval.state}, not approved")
            if (approval.requester, approval.verb, approval.target, approval.command) != asked:
                raise ApprovalError(
                    f"approval {approval_id} was for {approval.requester} {approval.verb} on "
                    f"{approval.target}: {approval.command!r}; it does not cover this request",
                    code="PERMISSION_DENIED")
            cursor = self._run("UPDATE approvals SET redeemed_at = ? WHERE id = ? "
                               "AND redeemed_at IS NULL", (self._clock(), approval_id))
            if cursor.rowcount != 1:
                raise ApprovalError(f"approval {approval_id} was already used")
            return self._load(approval_id)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- inside the lock ------------------------------------------------------------------

    def _decide(self, approval_id: str, *, approver: str, state: str) -> Approval:
        with self._lock:
            self._expire()
            approval = self._load(approval_id)
            if state == "approved" and approver == approval.requester:
                raise ApprovalError(
                    f"{approver} cannot approve their own request {approval_id}; "
                    "a different identity must approve it", code="PERMISSION_DENIED")
            if approval.state == "expired":
                raise ApprovalError(
                    f"approval {approval_id} expired {_ago(self._clock(), approval.expires_at)}"
                    " without a decision; the requester must ask again")
            if approval.state != "pending":
                by = f" by {approval.decided_by}" if approval.decided_by else ""
                raise ApprovalError(f"approval {approval_id} is already {approval.state}{by}; "
                                    "only pending requests can be decided")
            self._run("UPDATE approvals SET state = ?, decided_by = ?, decided_at = ? "
                      "WHERE id = ? AND state = 'pending'",
                      (state, approver, self._clock(), approval_id))
            self._changed.notify_all()
            return self._load(approval_id)

    def _expire(self) -> None:
        cursor = self._run("UPDATE approvals SET state = 'expired' WHERE expires_at <= ? AND "
                           "(state = 'pending' OR (state = 'approved' AND redeemed_at IS NULL))",
                           (self._clock(),))
        if cursor.rowcount:
            self._changed.notify_all()

    def _load(self, approval_id: str) -> Approval:
        row = self._run(f"SELECT {_COLUMNS} FROM approvals WHERE id = ?",
                        (approval_id,)).fetchone()
        if row is None:  # naming other ids here would hand them to whoever guesses
            raise ApprovalError(f"unknown approval id {approval_id!r}; `coral approvals` "
                                "lists the pending ones you may see", code="NOT_FOUND")
        return Approval(*row)

    def _run(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise ApprovalError(f"approvals store {self.path}: {exc}") from exc


def _ago(now: float, then: float) -> str:
    return f"{max(0.0, now - then):.0f}s ago"
