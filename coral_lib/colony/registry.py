"""The colony registry: agents and their services in SQLite (WAL), surviving restarts."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
import threading
import time

from coral_lib import convert
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import group_commit, storage

log = logging.getLogger(__name__)

# Every filter a user gives (name, namespace, node, a label pair; agent is the primary key)
# has an index that ends in (agent_id, key): a page in the listing order is a range scan
# of that index from the page token on, whatever the registry holds. Migration: the
# schema script runs at every open; it drops the single-column indexes of registries
# written before paging (their columns lead the new ones) and builds the new ones once.
SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
  agent_id TEXT PRIMARY KEY, version TEXT NOT NULL, runtime BLOB NOT NULL,
  node_name TEXT NOT NULL, node_labels TEXT NOT NULL, labels TEXT NOT NULL,
  registered_at REAL NOT NULL, last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS services (
  agent_id TEXT NOT NULL, key TEXT NOT NULL, component_name TEXT NOT NULL,
  namespace TEXT NOT NULL, node_name TEXT NOT NULL, provenance INTEGER NOT NULL,
  labels TEXT NOT NULL, body BLOB NOT NULL,
  PRIMARY KEY (agent_id, key)
);
CREATE TABLE IF NOT EXISTS service_labels (
  agent_id TEXT NOT NULL, key TEXT NOT NULL, label TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (agent_id, key, label)
);
DROP INDEX IF EXISTS services_name;
DROP INDEX IF EXISTS services_namespace;
DROP INDEX IF EXISTS services_node;
DROP INDEX IF EXISTS service_labels_pair;
CREATE INDEX IF NOT EXISTS services_name_page ON services(component_name, agent_id, key);
CREATE INDEX IF NOT EXISTS services_namespace_page ON services(namespace, agent_id, key);
CREATE INDEX IF NOT EXISTS services_node_page ON services(node_name, agent_id, key);
CREATE INDEX IF NOT EXISTS service_labels_page ON service_labels(label, value, agent_id, key);
CREATE TABLE IF NOT EXISTS agent_pods (
  agent_id TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, body BLOB NOT NULL,
  PRIMARY KEY (agent_id, namespace, name)
);
CREATE TABLE IF NOT EXISTS service_health (
  agent_id TEXT NOT NULL, key TEXT NOT NULL, body BLOB NOT NULL,
  PRIMARY KEY (agent_id, key)
);
CREATE TABLE IF NOT EXISTS departed_agents (
  agent_id TEXT PRIMARY KEY, event TEXT NOT NULL, departed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS service_counts (
  agent_id TEXT PRIMARY KEY, services INTEGER NOT NULL
);
"""


@dataclasses.dataclass(frozen=True)
class AgentRow:
    agent_id: str
    version: str
    runtime: agent_pb2.RuntimeContext
    node_name: str
    node_labels: dict[str, str]
    labels: dict[str, str]
    registered_at: float
    last_seen: float


@dataclasses.dataclass(frozen=True)
class ServiceDiff:
    added: list[mesh_pb2.ServiceInfo]
    removed: list[mesh_pb2.ServiceInfo]
    changed: list[mesh_pb2.ServiceInfo]
    count: int = 0  # services the agent has once the diff is applied (the wanted set)


@dataclasses.dataclass(frozen=True)
class ServiceFilter:
    name: str = ""
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    provenance: int = 0  # 0 = any
    agent: str = ""
    node: str = ""
    namespace: str = ""


def agent_status(*, last_seen: float, now: float, degraded_after: float,
                 unhealthy_after: float) -> str:
    """healthy / degraded / unhealthy from the age of the last heartbeat."""
    age = now - last_seen
    if age < degraded_after:
        return "healthy"
    return "degraded" if age < unhealthy_after else "unhealthy"


class RegistryError(Exception):
    """A registry file could not be opened or written; the message names the cause."""


@contextlib.contextmanager
def _explained(what: str, path: str):
    try:
        yield
    except sqlite3.Error as exc:
        raise RegistryError(storage.explain(what, path, exc)) from None


class Registry:
    def __init__(self, path: str | os.PathLike) -> None:
        self._lock = threading.Lock()
        self._group = group_commit.GroupCommit(self._lock)  # registrations, both backends
        self.path = os.fspath(path)
        with _explained("cannot open the registry", self.path):
            self._db = storage.connect(self.path, store="registry")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._backfill_labels()
            self._backfill_counts()
            # ListServices reads on a connection of their own: behind the writer's lock they
            # queued after every heartbeat and registration commit (the p99 at scale)
            self._reader = storage.connect(self.path, store="registry")
        self._read_lock = threading.Lock()

    def _backfill_labels(self) -> None:
        """Registries written before the label index existed: index their labels once."""
        if self._db.execute("SELECT 1 FROM service_labels LIMIT 1").fetchone():
            return
        rows = self._db.execute("SELECT agent_id, key, labels FROM services").fetchall()
        self._db.executemany("INSERT OR IGNORE INTO service_labels VALUES (?,?,?,?)", [
            (agent_id, key, label, value) for agent_id, key, labels in rows
            for label, value in json.loads(labels).items()])

    def _backfill_counts(self) -> None:
        """Registries written before service_counts existed: count their services once
        (ListAgents reads the maintained counts; a GROUP BY over every service per call
        took seconds at 1,000,000 services)."""
        if self._db.execute("SELECT 1 FROM service_counts LIMIT 1").fetchone() or not (
                self._db.execute("SELECT 1 FROM services LIMIT 1").fetchone()):
            return
        self._db.execute("INSERT OR IGNORE INTO service_counts SELECT agent_id, COUNT(*) "
                         "FROM services GROUP BY agent_id")  # replicas opening together

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._db.close()
            self._reader.close()

    def upsert_agent(self, row: AgentRow) -> None:
        with self._lock, _explained("agent not stored", self.path):
            self._upsert_agent(row)

    def _upsert_agent(self, row: AgentRow) -> None:
        self._db.execute(_AGENT_UPSERT, _agent_values(row))

    def touch(self, agent_id: str, *, now: float | None = None) -> bool:
        """Record a heartbeat; False when the agent is unknown."""
        with self._lock, _explained("heartbeat not stored", self.path):
            cur = self._db.execute(
                "UPDATE agents SET last_seen=? WHERE agent_id=?", (now or time.time(), agent_id)
            )
            return cur.rowcount == 1

    def agents(self, *, node: str = "") -> list[AgentRow]:
        sql, args = "SELECT * FROM agents", ()
        if node:
            sql, args = sql + " WHERE node_name=?", (node,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY agent_id", args).fetchall()
        return [_agent_row(r) for r in rows]

    def get_agent(self, agent_id: str) -> AgentRow | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM agents WHERE agent_id=?", (agent_id,)).fetchone()
        return _agent_row(row) if row else None

    def service_counts(self) -> dict[str, int]:
        """Services per agent (absent or 0 for an agent with none), one row per agent: the count
        replace_services keeps beside the services in the same transaction."""
        with self._read_lock:
            return dict(self._reader.execute(
                "SELECT agent_id, services FROM service_counts").fetchall())

    def replace_services(self, agent_id: str, services: list[mesh_pb2.ServiceInfo]) -> ServiceDiff:
        """Make the agent's stored set equal `services`, in one transaction; return the diff.
        An unchanged set writes nothing."""
        with self._lock, _explained("services not stored", self.path):
            diff = self._diff(agent_id, services)
            if diff.added or diff.removed or diff.changed:
                self._transaction(lambda: self._apply(agent_id, diff))
        return diff

    def register(self, row: AgentRow, services: list[mesh_pb2.ServiceInfo], *,
                 pods: list[mesh_pb2.PodRef]) -> tuple[AgentRow | None, ServiceDiff]:
        """One registration in one transaction: the agent row (keeping the registered_at of
        an agent already stored), its service set (only the differences are written) and
        pods, and the agent no longer departed. Returns (the row stored before, the diff).
        Registrations queued while another is written are written with it in one
        transaction (_register_all); each caller still returns only once its own is
        committed, or gets its own error."""
        return self._group.submit((row, services, pods), self._register_all)

    def _register_alone(self, item: tuple):
        """One registration in its own transaction (lock held); its outcome or error."""
        try:
            with _explained("registration not stored", self.path):
                return self._transaction(lambda: self._register_each([item])[0],
                                         key=item[0].agent_id)
        except Exception as exc:  # noqa: BLE001 - the caller of this registration gets it
            return exc

    def _register_all(self, items: list[tuple]) -> list:
        """The lock held: the queued registrations (row, services, pods) in one transaction
        when they are of different agents (on PostgreSQL the reads of all of them in one
        round trip, the writes and COMMIT in one more). When that transaction fails, each
        is written again in its own, so only a registration the store refuses fails."""
        agents = [row.agent_id for row, _, _ in items]
        if len(items) > 1 and len(set(agents)) == len(agents):
            try:
                with _explained("registrations not stored", self.path):
                    if storage.is_file(self.path):
                        return self._transaction(lambda: self._register_each(items))
                    return self._pipelined_transaction(lambda: self._register_each(items),
                                                       keys=agents)
            except Exception:  # noqa: BLE001 - each again alone: it gets its own outcome
                log.warning("a group of %d registrations was refused; writing each alone",
                            len(items))
        return [self._register_alone(item) for item in items]

    def _register_each(self, items: list[tuple]) -> list[tuple[AgentRow | None, ServiceDiff]]:
        """Write each registration (row, services, pods) inside the open transaction.
        Every read is sent before the first answer is awaited: on PostgreSQL the reads of
        all of them are one round trip, and the writes plus COMMIT one more (pipeline)."""
        reads = [[self._db.execute(sql, (row.agent_id,)) for sql in _REGISTER_READS]
                 for row, _, _ in items]
        fetched = [[cursor.fetchall() for cursor in cursors] for cursors in reads]
        return [self._register_rows(row, services, pods, rows)
                for (row, services, pods), rows in zip(items, fetched, strict=True)]

    def _register_rows(self, row: AgentRow, services: list[mesh_pb2.ServiceInfo],
                       pods: list[mesh_pb2.PodRef], rows: list[list]
                       ) -> tuple[AgentRow | None, ServiceDiff]:
        """One registration's writes, given what _REGISTER_READS read of its agent."""
        before, stored, stored_pods = rows
        before = _agent_row(before[0]) if before else None
        kept = dataclasses.replace(row, registered_at=(
            before.registered_at if before else row.registered_at))
        diff = self._diff(row.agent_id, services, stored=stored)
        if not storage.is_file(self.path):
            self._pg_register_write(kept, diff, departed=before is None)
            self._store_pods(row.agent_id, pods, stored=stored_pods)
            return before, diff
        self._upsert_agent(kept)
        self._apply(row.agent_id, diff)
        self._store_pods(row.agent_id, pods, stored=stored_pods)
        if before is None:
            self._db.execute("DELETE FROM departed_agents WHERE agent_id=?", (row.agent_id,))
        return before, diff

    def _diff(self, agent_id: str, services: list[mesh_pb2.ServiceInfo], *,
              stored: list[tuple[str, bytes]] | None = None) -> ServiceDiff:
        """What writing `services` changes against the stored set (compared as bytes);
        `stored`: the agent's (key, body) rows when already read (_REGISTER_READS)."""
        wanted = {convert.service_key(s): s for s in services}
        stored = dict(self._db.execute(_REGISTER_READS[1], (agent_id,)).fetchall()
                      if stored is None else stored)
        removed = [_service(body) for k, body in stored.items() if k not in wanted]
        changed = [s for k, s in wanted.items() if k in stored and bytes(stored[k]) != (
            s.SerializeToString()) and _service(stored[k]) != s]
        return ServiceDiff(added=[s for k, s in wanted.items() if k not in stored],
                           removed=removed, changed=changed, count=len(wanted))

    def _apply(self, agent_id: str, diff: ServiceDiff) -> None:
        self._delete(agent_id, [convert.service_key(s) for s in diff.removed + diff.changed])
        self._insert(agent_id, diff.added + diff.changed)
        if diff.added or diff.removed:  # ListAgents' count, in the same transaction: the
            # stored set is now the wanted one (read under this agent's write lock)
            self._db.execute("INSERT OR REPLACE INTO service_counts VALUES (?,?)",
                             (agent_id, diff.count))

    def _pg_register_write(self, row: AgentRow, diff: ServiceDiff, *, departed: bool) -> None:
        """PostgreSQL: what _upsert_agent, _apply and the departed delete write, in one
        statement (_pg_register_statement) after the old rows of removed and changed
        services are deleted in their own (parts of one statement cannot see each other's
        changes, and a changed service's new rows reuse its keys)."""
        self._delete(row.agent_id, [convert.service_key(s) for s in diff.removed + diff.changed])
        self._db.execute(*_pg_register_statement(
            row, diff.added + diff.changed,
            count=diff.count if diff.added or diff.removed else None, departed=departed))

    def _store_pods(self, agent_id: str, pods: list[mesh_pb2.PodRef], *,
                    stored: list[tuple[str, str, bytes]] | None = None) -> None:
        """The agent's pods, rewritten only when they differ from the stored ones
        (`stored`: the agent's pod rows when already read)."""
        wanted = sorted((p.namespace, p.name, p.SerializeToString()) for p in pods)
        stored = sorted((ns, name, bytes(body)) for ns, name, body in (
            self._db.execute(_REGISTER_READS[2], (agent_id,)) if stored is None else stored))
        if wanted != stored:
            self._db.execute("DELETE FROM agent_pods WHERE agent_id=?", (agent_id,))
            self._db.executemany("INSERT OR REPLACE INTO agent_pods VALUES (?,?,?,?)", [
                (agent_id, p.namespace, p.name, p.SerializeToString()) for p in pods])

    def _transaction(self, work, *, key: str = ""):
        """Run `work` in one IMMEDIATE transaction (called with the lock held). With `key`
        (an agent id: `work` writes only its rows), PostgreSQL serializes only the writers
        of that agent across replicas, not every registry write."""
        if key and not storage.is_file(self.path):
            return self._pipelined_transaction(work, keys=[key])
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = work()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return result

    def _pipelined_transaction(self, work, *, keys: list[str]):
        """_transaction on PostgreSQL for the rows of the agents `keys`, pipelined
        (pgsql.pipeline): the keyed locks and `work`'s reads in one round trip, its writes
        and COMMIT in one more. A failure anywhere leaves the transaction failed; it is
        rolled back, nothing kept."""
        try:
            with self._db.pipeline():
                if len(keys) == 1:
                    self._db.begin_keyed(keys[0])
                else:
                    self._db.begin_keyed_all(keys)
                result = work()
                self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return result

    def remove_agent(self, agent_id: str, *, event: str, now: float | None = None) -> int | None:
        """Remove an agent, its services, pods and health, remembering that it left
        (`event`: deregistered, expired, pruned); the number of services it had, or None
        when it was not registered."""
        def work() -> int | None:
            gone = self._db.execute("DELETE FROM agents WHERE agent_id=?", (agent_id,))
            if gone.rowcount != 1:
                return None  # nothing written: committing the empty transaction is a no-op
            count = self._db.execute("SELECT COUNT(*) FROM services WHERE agent_id=?",
                                     (agent_id,)).fetchone()[0]
            for table in ("services", "service_labels", "agent_pods", "service_health",
                          "service_counts"):
                self._db.execute(f"DELETE FROM {table} WHERE agent_id=?", (agent_id,))
            self._db.execute("INSERT OR REPLACE INTO departed_agents VALUES (?,?,?)",
                             (agent_id, event, now or time.time()))
            return count
        with self._lock, _explained("agent not removed", self.path):
            return self._transaction(work)

    def departed(self, agent_id: str) -> tuple[str, float] | None:
        """(event, when) for an agent that left and has not registered since."""
        with self._lock:
            row = self._db.execute("SELECT event, departed_at FROM departed_agents "
                                   "WHERE agent_id=?", (agent_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def replace_pods(self, agent_id: str, pods: list[mesh_pb2.PodRef]) -> None:
        """The pods a DaemonSet agent sees now (its complete list)."""
        with self._lock, _explained("pods not stored", self.path):
            self._transaction(lambda: self._store_pods(agent_id, pods))

    def pods(self) -> list[tuple[str, mesh_pb2.PodRef]]:
        with self._lock:
            rows = self._db.execute("SELECT agent_id, body FROM agent_pods "
                                    "ORDER BY agent_id, namespace, name").fetchall()
        return [(agent_id, mesh_pb2.PodRef.FromString(body)) for agent_id, body in rows]

    def pod(self, agent_id: str, namespace: str, name: str) -> mesh_pb2.PodRef | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM agent_pods WHERE agent_id=? AND "
                                   "namespace=? AND name=?", (agent_id, namespace, name)
                                   ).fetchone()
        return mesh_pb2.PodRef.FromString(row[0]) if row else None

    def set_health(self, agent_id: str, health: list[mesh_pb2.ServiceHealth]) -> None:
        with self._lock, _explained("health not stored", self.path):
            self._db.executemany("INSERT OR REPLACE INTO service_health VALUES (?,?,?)", [
                (agent_id, h.service_key, h.SerializeToString()) for h in health])

    def _delete(self, agent_id: str, keys: list[str]) -> None:
        if not keys:  # an empty executemany is still a round trip to PostgreSQL
            return
        if not storage.is_file(self.path):  # one statement, one round trip
            self._db.execute(_PG_DELETE, (agent_id, keys, agent_id, keys))
            return
        for table in ("services", "service_labels"):
            self._db.executemany(f"DELETE FROM {table} WHERE agent_id=? AND key=?",
                                 [(agent_id, key) for key in keys])

    def _insert(self, agent_id: str, services: list[mesh_pb2.ServiceInfo]) -> None:
        """Every row of a registration in two statements (no round trip per service)."""
        keyed = [(convert.service_key(svc), svc) for svc in services]
        if not keyed:
            return
        if not storage.is_file(self.path):
            self._db.execute(_PG_INSERT, _pg_insert_args(agent_id, keyed))
            return
        self._db.executemany("INSERT INTO services VALUES (?,?,?,?,?,?,?,?)", [
            (agent_id, key, svc.component_name, svc.namespace, svc.node_name, svc.provenance,
             json.dumps(dict(svc.labels)), svc.SerializeToString()) for key, svc in keyed])
        self._db.executemany("INSERT INTO service_labels VALUES (?,?,?,?)", [
            (agent_id, key, k, v) for key, svc in keyed for k, v in svc.labels.items()])

    def services(self, flt: ServiceFilter | None = None, *, after: tuple[str, str] | None = None,
                 limit: int | None = None) -> list[tuple[str, mesh_pb2.ServiceInfo]]:
        """Matching services in (agent id, service key) order; with `after` (the last
        (agent id, key) of the previous page) and `limit`, one page of them."""
        flt = flt or ServiceFilter()
        with self._read_lock:
            flt, by_label = self._plan(flt)
            sql, args = _service_query(flt, after=after, limit=limit, by_label=by_label)
            rows = self._reader.execute(sql, args).fetchall()
        return [(agent_id, _service(body)) for agent_id, body in rows]

    def service_rows(self, flt: ServiceFilter, *, after: tuple[str, str] | None = None,
                     limit: int | None = None) -> list[tuple[str, str, bytes]]:
        """services() as stored: (agent id, service key, serialized ServiceInfo), unparsed
        (ListServices answers with the bytes, colony/service_page.py)."""
        with self._read_lock:
            flt, by_label = self._plan(flt)
            sql, args = _service_query(flt, after=after, limit=limit, by_label=by_label,
                                       with_key=True)
            return [(agent_id, key, bytes(body)) for agent_id, key, body in
                    self._reader.execute(sql, args).fetchall()]

    def _plan(self, flt: ServiceFilter) -> tuple[ServiceFilter, bool]:
        """Which index drives a query with labels: the rarest label pair first, and it
        drives unless a column filter (name, agent, node, namespace) matches fewer rows
        (namespace=shop with tier=web: the namespace's rows, each checked for the label,
        not every web service checked for the namespace). Counts stop at PLAN_CAP."""
        columns = [(c, v) for c, v in _COLUMNS(flt) if v]
        if not flt.labels or (len(flt.labels) == 1 and not columns):
            return flt, bool(flt.labels)
        counts = {pair: self._capped("service_labels", "label=? AND value=?", pair)
                  for pair in flt.labels.items()}
        labels = dict(sorted(flt.labels.items(), key=lambda pair: counts[pair]))
        fewest = min((self._capped("services", f"{c}=?", (v,)) for c, v in columns),
                     default=PLAN_CAP + 1)
        return dataclasses.replace(flt, labels=labels), min(counts.values()) <= fewest

    def _capped(self, table: str, where: str, args: tuple) -> int:
        return self._reader.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM {table} WHERE "
                                    f"{where} LIMIT {PLAN_CAP}) AS capped", args).fetchone()[0]

    def health_of(self, keys: list[tuple[str, str]]
                  ) -> dict[tuple[str, str], mesh_pb2.ServiceHealth]:
        """The latest probe of each (agent id, service key) in `keys` that has one."""
        agents = sorted({agent_id for agent_id, _ in keys})
        wanted, found = set(keys), {}
        with self._read_lock:
            for start in range(0, len(agents), 500):  # bound the statement's parameters
                chunk = agents[start:start + 500]
                found.update(((a, k), b) for a, k, b in self._reader.execute(
                    "SELECT agent_id, key, body FROM service_health WHERE agent_id IN "
                    f"({','.join('?' * len(chunk))})", chunk).fetchall() if (a, k) in wanted)
        return {pair: mesh_pb2.ServiceHealth.FromString(body) for pair, body in found.items()}


# What a registration reads of the agent before writing (Registry.register sends all three
# before awaiting the first answer): its row, its services, its pods.
_REGISTER_READS = ("SELECT * FROM agents WHERE agent_id=?",
                   "SELECT key, body FROM services WHERE agent_id=?",
                   "SELECT namespace, name, body FROM agent_pods WHERE agent_id=?")

_AGENT_UPSERT = (
    "INSERT INTO agents VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(agent_id) DO UPDATE SET "
    "version=excluded.version, runtime=excluded.runtime, node_name=excluded.node_name,"
    " node_labels=excluded.node_labels, labels=excluded.labels,"
    " last_seen=excluded.last_seen")


def _agent_values(row: AgentRow) -> tuple:
    return (row.agent_id, row.version, row.runtime.SerializeToString(), row.node_name,
            json.dumps(row.node_labels), json.dumps(row.labels), row.registered_at,
            row.last_seen)


def _pg_register_statement(row: AgentRow, services: list[mesh_pb2.ServiceInfo], *,
                           count: int | None, departed: bool) -> tuple[str, tuple]:
    """(sql, parameters): a registration's writes on PostgreSQL as one statement (issue 11:
    each statement cost the colony and the server their own round of work): the agent's
    upsert, then as wanted no longer departed, its service count, and its services' and
    labels' rows (_PG_INSERT). Data-modifying WITH parts each run once, to completion,
    whatever the main query reads; each here writes a table no other part writes."""
    parts, args = [f"agent AS ({_AGENT_UPSERT})"], list(_agent_values(row))
    if departed:
        parts.append("departed AS (DELETE FROM departed_agents WHERE agent_id=?)")
        args.append(row.agent_id)
    if count is not None:
        parts.append("counted AS (INSERT INTO service_counts VALUES (?,?) ON CONFLICT "
                     "(agent_id) DO UPDATE SET services = EXCLUDED.services)")
        args += [row.agent_id, count]
    head = "WITH " + ", ".join(parts)
    if not services:
        return head + " SELECT 1", tuple(args)
    keyed = [(convert.service_key(svc), svc) for svc in services]
    return (head + ", " + _PG_INSERT.removeprefix("WITH "),
            (*args, *_pg_insert_args(row.agent_id, keyed)))


# PostgreSQL: a registration's rows in one statement, as one JSON parameter (executemany
# pipelined a statement per row; typed array parameters were dumped element by element in
# Python). Each service is a JSON array (key, name, namespace, node, provenance, labels,
# body in base64): no repeated field names to build and parse. The labels object's text is
# stored as it comes (the json type keeps its input text: json.dumps(dict(labels)), as
# SQLite's column holds), and the labels rows come from it as SQLite's come from the dict.
_PG_DELETE = ("WITH gone AS (DELETE FROM services WHERE agent_id=? AND key = ANY(?)) "
              "DELETE FROM service_labels WHERE agent_id=? AND key = ANY(?)")
_PG_INSERT = (
    "WITH r AS (SELECT ?::text AS agent_id, e->>0 AS key, e->>1 AS component_name, "
    "e->>2 AS namespace, e->>3 AS node_name, (e->>4)::bigint AS provenance, e->5 AS labels, "
    "e->>6 AS body FROM json_array_elements(?::json) AS e), "
    "added AS (INSERT INTO services SELECT agent_id, key, component_name, namespace, "
    "node_name, provenance, labels::text, decode(body, 'base64') FROM r) "
    "INSERT INTO service_labels SELECT r.agent_id, r.key, l.key, l.value "
    "FROM r, json_each_text(r.labels) AS l")


def _pg_insert_args(agent_id: str, keyed: list[tuple[str, mesh_pb2.ServiceInfo]]) -> tuple:
    """_PG_INSERT's parameters: the agent id, the services' rows as JSON (body in base64)."""
    return agent_id, json.dumps([
        [key, svc.component_name, svc.namespace, svc.node_name, svc.provenance,
         dict(svc.labels), base64.b64encode(svc.SerializeToString()).decode()]
        for key, svc in keyed])


PLAN_CAP = 10_000  # _plan counts index entries up to this many, no further


def _COLUMNS(flt: ServiceFilter) -> tuple[tuple[str, str], ...]:  # noqa: N802 - a table
    return (("component_name", flt.name), ("agent_id", flt.agent), ("node_name", flt.node),
            ("namespace", flt.namespace))


def _service_query(flt: ServiceFilter, *, after: tuple[str, str] | None = None,
                   limit: int | None = None, by_label: bool | None = None,
                   with_key: bool = False) -> tuple[str, list]:
    """SQL for one page. `by_label` (default: when labels are given): the first label
    pair's index drives (rows come out of service_labels_page in page order; CROSS JOIN
    keeps SQLite from reordering); else the services index of a filtered column. Both
    end in (agent_id, key), so `after` is a range bound. `with_key`: the key column too."""
    labels = list(flt.labels.items())
    by_label = bool(labels) if by_label is None else by_label and bool(labels)
    order = "l.agent_id, l.key" if by_label else "s.agent_id, s.key"
    source = "service_labels l CROSS JOIN services s" if by_label else "services s"
    clauses, args = [], []
    if by_label:
        clauses.append("l.label=? AND l.value=? AND s.agent_id=l.agent_id AND s.key=l.key")
        args += list(labels[0])
    for column, value in _COLUMNS(flt):
        if value:
            clauses.append(f"s.{column}=?")
            args.append(value)
    if flt.provenance:
        clauses.append("s.provenance=?")
        args.append(flt.provenance)
    # A primary-key lookup per candidate, written as a scalar subquery: PostgreSQL turns
    # an EXISTS into a merge semi-join that reads every index entry of the label pair
    # (250,000 for tier=web at 1,000,000 services) to check a namespace's 2,000 candidates.
    for label, value in labels[1:] if by_label else labels:
        clauses.append("(SELECT m.value FROM service_labels m WHERE m.agent_id=s.agent_id "
                       "AND m.key=s.key AND m.label=?) = ?")
        args += [label, value]
    if after is not None:
        clauses.append(f"({order}) > (?, ?)")
        args += list(after)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    tail = ""
    if limit is not None:
        tail = " LIMIT ?"
        args.append(limit)
    columns = "s.agent_id, s.key, s.body" if with_key else "s.agent_id, s.body"
    return f"SELECT {columns} FROM {source}{where} ORDER BY {order}{tail}", args


def _service(body: bytes) -> mesh_pb2.ServiceInfo:
    msg = mesh_pb2.ServiceInfo()
    msg.ParseFromString(body)
    return msg


def _agent_row(row: tuple) -> AgentRow:
    runtime = agent_pb2.RuntimeContext()
    runtime.ParseFromString(row[2])
    return AgentRow(
        agent_id=row[0], version=row[1], runtime=runtime, node_name=row[3],
        node_labels=json.loads(row[4]), labels=json.loads(row[5]), registered_at=row[6],
        last_seen=row[7],
    )
