"""Colony replicas sharing one PostgreSQL database: who is alive and who holds which link.

Two tables in the shared database:

* `colony_replicas` (name, address, started_at, heartbeat_at): every replica writes its
  heartbeat each `interval` seconds; the address is where the others reach its replica
  port (mutual TLS, coral_lib.colony.replica_link).
* `colony_links` (agent_id, replica, linked_at): which replica holds each agent's Link
  stream; written when a link opens or closes, and re-asserted with every heartbeat.

A replica whose heartbeat is older than `dead_after` is dead (`dead_replicas`, pure). The
first survivor to notice closes that replica's operations in the audit log as
`interrupted` (their `started` records name the replica), then drops its rows; the audit
store's lock makes that happen once. A replica starting under a name closes what an earlier
process of the same name left open the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable

from coral_lib.colony import audit as audit_mod
from coral_lib.colony import storage

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS colony_replicas (
  name TEXT PRIMARY KEY, address TEXT NOT NULL, started_at REAL NOT NULL,
  heartbeat_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS colony_links (
  agent_id TEXT PRIMARY KEY, replica TEXT NOT NULL, linked_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS colony_links_replica ON colony_links (replica);
"""
INTERRUPTED = "colony replica {name} stopped answering (no heartbeat for {age:.0f}s) " \
              "before the operation finished"


@dataclasses.dataclass(frozen=True)
class Replica:
    name: str
    address: str
    heartbeat_at: float


def dead_replicas(rows: Iterable[Replica], *, now: float, dead_after: float,
                  me: str) -> list[Replica]:
    """Replicas other than `me` whose last heartbeat is older than `dead_after`."""
    return [r for r in rows if r.name != me and now - r.heartbeat_at > dead_after]


class Membership:
    """This replica's row, its links' rows, and the reaping of dead replicas."""

    def __init__(self, where: str, *, name: str, address: str, audit: audit_mod.AuditLog,
                 connected: Callable[[], set[str]], interval: float = 1.0,
                 dead_after: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        if not 0 < interval < dead_after:
            raise ValueError(f"replica heartbeat every {interval}s must be positive and shorter "
                             f"than the {dead_after}s after which a replica counts as dead")
        self.name, self.address, self.audit = name, address, audit
        self.interval, self.dead_after = interval, dead_after
        self._connected, self._clock = connected, clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_beat: list[Callable[[], None]] = []  # e.g. reload revocations
        self._db = storage.connect(where, store="replicas")
        self._db.executescript(SCHEMA)
        now = self._clock()
        with self._lock:
            self._db.execute("DELETE FROM colony_links WHERE replica = ?", (name,))
            self._db.execute(
                "INSERT INTO colony_replicas (name, address, started_at, heartbeat_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET address = excluded.address,"
                " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at",
                (name, address, now, now))
        closed = audit.mark_interrupted_for(
            name, error=f"colony replica {name} restarted before the operation finished")
        if closed:
            log.warning("replica %s: %d operations of its previous run marked interrupted",
                        name, closed)

    # -- links -----------------------------------------------------------------------------

    def linked(self, agent_id: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO colony_links (agent_id, replica, linked_at) VALUES (?, ?, ?) "
                "ON CONFLICT(agent_id) DO UPDATE SET replica = excluded.replica, "
                "linked_at = excluded.linked_at", (agent_id, self.name, self._clock()))

    def unlinked(self, agent_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM colony_links WHERE agent_id = ? AND replica = ?",
                             (agent_id, self.name))

    def holder(self, agent_id: str) -> Replica | None:
        """The live replica holding `agent_id`'s link, when it is not this one."""
        with self._lock:
            row = self._db.execute(
                "SELECT r.name, r.address, r.heartbeat_at FROM colony_links l JOIN "
                "colony_replicas r ON r.name = l.replica WHERE l.agent_id = ?",
                (agent_id,)).fetchone()
        if row is None or row[0] == self.name:
            return None
        replica = Replica(*row)
        return None if self._clock() - replica.heartbeat_at > self.dead_after else replica

    def linked_anywhere(self) -> set[str]:
        """Agents whose link a live replica holds (ListAgents' `connected`)."""
        since = self._clock() - self.dead_after
        with self._lock:
            return {row[0] for row in self._db.execute(
                "SELECT l.agent_id FROM colony_links l JOIN colony_replicas r ON "
                "r.name = l.replica WHERE r.heartbeat_at >= ?", (since,))}

    def replicas(self) -> list[Replica]:
        with self._lock:
            rows = self._db.execute("SELECT name, address, heartbeat_at FROM colony_replicas "
                                    "ORDER BY name").fetchall()
        return [Replica(*row) for row in rows]

    # -- heartbeat and reaping ---------------------------------------------------------------

    def beat(self) -> list[str]:
        """One heartbeat: our row, our links re-asserted, dead replicas reaped (their names)."""
        now = self._clock()
        with self._lock:
            self._db.execute("UPDATE colony_replicas SET heartbeat_at = ?, address = ? "
                             "WHERE name = ?", (now, self.address, self.name))
            if self._db.execute("SELECT 1 FROM colony_replicas WHERE name = ?",
                                (self.name,)).fetchone() is None:  # reaped while stalled
                self._db.execute("INSERT INTO colony_replicas VALUES (?, ?, ?, ?)",
                                 (self.name, self.address, now, now))
            ours = {r[0] for r in self._db.execute(
                "SELECT agent_id FROM colony_links WHERE replica = ?", (self.name,))}
        for agent_id in self._connected() - ours:
            self.linked(agent_id)
        reaped = [r.name for r in dead_replicas(self.replicas(), now=now,
                                                 dead_after=self.dead_after, me=self.name)
                  if self._reap(r, now)]
        for hook in self.on_beat:
            hook()
        return reaped

    def _reap(self, dead: Replica, now: float) -> bool:
        closed = self.audit.mark_interrupted_for(
            dead.name, error=INTERRUPTED.format(name=dead.name, age=now - dead.heartbeat_at))
        with self._lock:
            self._db.execute("DELETE FROM colony_links WHERE replica = ?", (dead.name,))
            cur = self._db.execute("DELETE FROM colony_replicas WHERE name = ? AND "
                                   "heartbeat_at = ?", (dead.name, dead.heartbeat_at))
        if cur.rowcount:
            log.warning("replica %s is dead (no heartbeat for %.0fs): %d of its operations "
                        "marked interrupted", dead.name, now - dead.heartbeat_at, closed)
        return bool(cur.rowcount)

    def start(self) -> Membership:
        self._thread = threading.Thread(target=self._run, name="replica-heartbeat",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - the database may be back next beat
                log.error("replica %s heartbeat failed: %s", self.name, exc)

    def close(self) -> None:
        """Leave cleanly: our links and row go, so nothing waits for us to be declared dead."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            try:
                self._db.execute("DELETE FROM colony_links WHERE replica = ?", (self.name,))
                self._db.execute("DELETE FROM colony_replicas WHERE name = ?", (self.name,))
            finally:
                self._db.close()
