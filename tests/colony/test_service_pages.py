"""ListServices at scale (issue 11, Benchmarks: "`ListServices` p99 at 1,000,000 services"):
every filter users give has an index ending in (agent id, service key), a listing comes
in pages (page_size / page_token) so no answer materialises the whole registry, old
registries are migrated to the new indexes, and clients from before paging still get
every match. Storage tests take `database` (tests/conftest.py): SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import pathlib
import tempfile

import grpc
import pytest

from coral_lib import client, convert
from coral_lib._proto.coral.colony.v1 import colony_pb2, colony_pb2_grpc
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import paging, pki, registry, storage
from tests.support import agent_identity, coral_procs

FILTERS = {
    "none": registry.ServiceFilter(),
    "namespace": registry.ServiceFilter(namespace="ns-1"),
    "label": registry.ServiceFilter(labels={"tier": "web"}),
    "two_labels": registry.ServiceFilter(labels={"tier": "web", "shard": "2"}),
    "namespace_and_label": registry.ServiceFilter(namespace="ns-2", labels={"tier": "db"}),
    "name": registry.ServiceFilter(name="svc-3"),
    "agent": registry.ServiceFilter(agent="agent-2"),
    "node": registry.ServiceFilter(node="node-1"),
    "provenance": registry.ServiceFilter(provenance=mesh_pb2.SERVICE_PROVENANCE_EXPLICIT),
}


def services_of(agent: int, count: int = 12) -> list[mesh_pb2.ServiceInfo]:
    return [mesh_pb2.ServiceInfo(
        component_name=f"svc-{j % 5}", port=8000 + j, namespace=f"ns-{j % 3}",
        pod_name=f"pod-{agent}-{j}", node_name=f"node-{agent % 2}",
        provenance=1 + j % 2,
        labels={"tier": ("web", "db")[j % 2], "shard": str(j % 4)}) for j in range(count)]


def filled(where) -> registry.Registry:
    reg = registry.Registry(where)
    for agent in range(4):
        reg.replace_services(f"agent-{agent}", services_of(agent))
    return reg


def paged(reg: registry.Registry, flt: registry.ServiceFilter, size: int) -> list:
    rows, after = [], None
    while True:
        page = reg.services(flt, after=after, limit=size)
        rows += page
        if len(page) < size:
            return rows
        after = (page[-1][0], convert.service_key(page[-1][1]))


@pytest.mark.parametrize("name", FILTERS)
def test_pages_cover_every_match_once_in_listing_order(database, name):
    reg = filled(database("registry.db"))
    whole = reg.services(FILTERS[name])
    assert whole, f"filter {name} matches nothing: the case tests nothing"
    keys = [(a, convert.service_key(s)) for a, s in whole]
    assert keys == sorted(keys)
    for size in (1, 5, 7, len(whole) + 1):
        assert paged(reg, FILTERS[name], size) == whole


def test_a_page_boundary_survives_services_coming_and_going(database):
    """Keyset paging: a service removed before the token, or added after it, neither
    repeats nor hides the rest of the listing."""
    reg = filled(database("registry.db"))
    first = reg.services(after=None, limit=10)
    after = (first[-1][0], convert.service_key(first[-1][1]))
    reg.replace_services("agent-0", services_of(0, count=3))  # shrinks before the boundary
    reg.replace_services("agent-9", services_of(9))           # grows after it
    rest = reg.services(after=after)
    assert [a for a, _ in rest] == sorted(a for a, _ in rest)
    assert not {(a, convert.service_key(s)) for a, s in first} & {
        (a, convert.service_key(s)) for a, s in rest}
    assert {a for a, _ in rest} >= {"agent-1", "agent-2", "agent-3", "agent-9"}


def _plan(reg: registry.Registry, flt: registry.ServiceFilter) -> str:
    flt, by_label = reg._plan(flt)
    sql, args = registry._service_query(flt, after=("agent-1", ""), limit=10,
                                        by_label=by_label)
    if storage.is_file(reg.path):
        return " ".join(str(r[-1]) for r in reg._db.execute(f"EXPLAIN QUERY PLAN {sql}", args))
    reg._db.execute("SET enable_seqscan = off")  # a handful of rows: the planner may scan
    return " ".join(r[0] for r in reg._db.execute(f"EXPLAIN {sql}", args).fetchall())


@pytest.mark.parametrize("name, index", [
    ("namespace", "services_namespace_page"), ("label", "service_labels_page"),
    ("name", "services_name_page"), ("node", "services_node_page"),
    ("two_labels", "service_labels_page")])
def test_each_filter_reads_its_paging_index(database, name, index):
    reg = filled(database("registry.db"))
    assert index in _plan(reg, FILTERS[name])


def test_the_filter_matching_fewer_rows_drives_the_query(database):
    """namespace=X with a label most services carry: the namespace's rows are read (each
    checked for the label), not every labelled service checked for the namespace; and a
    rare label drives past a broad namespace. (1M services: 300 ms -> a few ms a page.)"""
    reg = registry.Registry(database("registry.db"))
    reg.replace_services("agent-0", [mesh_pb2.ServiceInfo(
        component_name=f"s{j}", port=j, namespace="big" if j % 20 else "small",
        pod_name=f"p{j}", labels={"tier": "web", "app": f"a{j % 40}"}) for j in range(400)])
    common = registry.ServiceFilter(namespace="small", labels={"tier": "web"})
    assert not reg._plan(common)[1]
    assert "services_namespace_page" in _plan(reg, common)
    rare = registry.ServiceFilter(namespace="big", labels={"tier": "web", "app": "a3"})
    flt, by_label = reg._plan(rare)
    assert by_label and list(flt.labels) == ["app", "tier"]
    assert "service_labels_page" in _plan(reg, rare)
    for flt in (common, rare):
        assert paged(reg, flt, 3) == reg.services(flt) != []
        assert {s.namespace for _, s in reg.services(flt)} == {flt.namespace}


# The registry schema as written before paging (single-column indexes).
OLD_SCHEMA = """
CREATE TABLE agents (
  agent_id TEXT PRIMARY KEY, version TEXT NOT NULL, runtime BLOB NOT NULL,
  node_name TEXT NOT NULL, node_labels TEXT NOT NULL, labels TEXT NOT NULL,
  registered_at REAL NOT NULL, last_seen REAL NOT NULL
);
CREATE TABLE services (
  agent_id TEXT NOT NULL, key TEXT NOT NULL, component_name TEXT NOT NULL,
  namespace TEXT NOT NULL, node_name TEXT NOT NULL, provenance INTEGER NOT NULL,
  labels TEXT NOT NULL, body BLOB NOT NULL,
  PRIMARY KEY (agent_id, key)
);
CREATE INDEX services_name ON services(component_name);
CREATE INDEX services_namespace ON services(namespace);
CREATE INDEX services_node ON services(node_name);
CREATE TABLE service_labels (
  agent_id TEXT NOT NULL, key TEXT NOT NULL, label TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (agent_id, key, label)
);
CREATE INDEX service_labels_pair ON service_labels(label, value)
"""


def _indexes(reg: registry.Registry) -> set[str]:
    if storage.is_file(reg.path):
        sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    return {row[0] for row in reg._db.execute(sql).fetchall()}


def test_a_registry_from_before_paging_is_migrated_on_open(database):
    where = database("registry.db")
    db = storage.connect(where, store="registry")
    db.executescript(OLD_SCHEMA)
    for agent in range(3):
        for svc in services_of(agent):
            key = convert.service_key(svc)
            db.execute("INSERT INTO services VALUES (?,?,?,?,?,?,?,?)", (
                f"agent-{agent}", key, svc.component_name, svc.namespace, svc.node_name,
                svc.provenance, json.dumps(dict(svc.labels)), svc.SerializeToString()))
            db.executemany("INSERT INTO service_labels VALUES (?,?,?,?)", [
                (f"agent-{agent}", key, k, v) for k, v in svc.labels.items()])
    db.close()
    reg = registry.Registry(where)
    names = _indexes(reg)
    assert {"services_namespace_page", "services_name_page", "services_node_page",
            "service_labels_page"} <= names
    assert not names & {"services_name", "services_namespace", "services_node",
                        "service_labels_pair"}
    flt = FILTERS["namespace_and_label"]
    assert paged(reg, flt, 2) == reg.services(flt) != []
    reg.close()
    assert _indexes(registry.Registry(where)) == names  # a second open changes nothing


def test_health_of_answers_for_the_asked_services_only(database):
    reg = filled(database("registry.db"))
    probe = mesh_pb2.ServiceHealth(service_key=convert.service_key(services_of(1)[0]),
                                   state="healthy")
    other = mesh_pb2.ServiceHealth(service_key=convert.service_key(services_of(1)[1]),
                                   state="unhealthy")
    reg.set_health("agent-1", [probe, other])
    asked = ("agent-1", probe.service_key)
    assert reg.health_of([asked, ("agent-2", probe.service_key)]) == {asked: probe}
    assert reg.health_of([]) == {}


@pytest.mark.parametrize("size, token, problem", [
    (-1, "", "page_size -1"), (5, "not a token!", "page_token"),
    (5, base64.urlsafe_b64encode(b'{"a": 1}').decode(), "page_token"),
    (5, base64.urlsafe_b64encode(b"[1, 2]").decode(), "page_token")])
def test_bad_page_requests_are_refused_naming_the_field(size, token, problem):
    with pytest.raises(paging.BadPage, match=problem):
        paging.page_limit(size)
        paging.decode(token)


def test_page_sizes_are_capped_and_zero_means_the_unpaged_answer():
    assert paging.page_limit(50) == 50
    assert paging.page_limit(10**9) == paging.MAX_PAGE_SIZE
    assert paging.page_limit(0) == paging.UNPAGED_LIMIT
    assert paging.decode(paging.encode("agent/ü", "ns/pod/c/x:1")) == ("agent/ü", "ns/pod/c/x:1")


def _register(colony: coral_procs.Colony, name: str, count: int) -> None:
    with agent_identity.MeshAgent(colony, pathlib.Path(tempfile.mkdtemp()), name) as agent:
        agent.join()
        reply = agent.stub.Register(mesh_pb2.RegisterRequest(
            node_name=name, services=[mesh_pb2.ServiceInfo(
                component_name=f"svc-{j % 5}", port=8000 + j, provenance=1,
                labels={"tier": ("web", "db")[j % 2]}) for j in range(count)]), timeout=30)
        assert reply.accepted, reply.reason


def test_list_services_over_grpc_in_pages_and_for_clients_before_paging(colony):
    """A real colony: the client pages through every match; a request without page_size
    (what clients before paging send) gets every match in one answer; bad paging input is
    INVALID_ARGUMENT naming the field; the CLI shows --limit services and says more match."""
    for name in ("host-a", "host-b", "host-c"):
        _register(colony, name, 12)
    with colony.client() as c:
        everything = c.list_services()
        assert len(everything) == 36
        assert c.list_services(page_size=5) == everything
        assert c.list_services(limit=7, page_size=3) == everything[:7]
        assert c.list_services(name="svc-1", labels={"tier": "db"}, page_size=2) == [
            s for s in everything
            if s["component_name"] == "svc-1" and s["labels"]["tier"] == "db"] != []
        stub = colony_pb2_grpc.ColonyStub(c._channel)
        legacy = stub.ListServices(colony_pb2.ListServicesRequest(), metadata=c._metadata,
                                   timeout=10)
        assert len(legacy.services) == 36 and legacy.next_page_token == ""
        page = stub.ListServices(colony_pb2.ListServicesRequest(page_size=30),
                                 metadata=c._metadata, timeout=10)
        assert len(page.services) == 30 and page.next_page_token
        last = stub.ListServices(colony_pb2.ListServicesRequest(
            page_size=30, page_token=page.next_page_token), metadata=c._metadata, timeout=10)
        assert len(last.services) == 6 and last.next_page_token == ""
        for request, field in ((colony_pb2.ListServicesRequest(page_size=-2), "page_size"),
                               (colony_pb2.ListServicesRequest(page_token="%%%"), "page_token")):
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListServices(request, metadata=c._metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field in refused.value.details()
        # A forged token is only a position (bound as parameters, never SQL text); the
        # caller's rights are checked on every page.
        forged = stub.ListServices(colony_pb2.ListServicesRequest(
            page_size=50, page_token=paging.encode("'; DROP TABLE services; --", "")),
            metadata=c._metadata, timeout=10)
        assert len(forged.services) == 36
        assert c.list_services() == everything
        with pytest.raises(grpc.RpcError) as anonymous:
            stub.ListServices(colony_pb2.ListServicesRequest(page_token=page.next_page_token),
                              timeout=10)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(client.InvalidRequest, match="limit 0"):
            c.list_services(limit=0)
    shown = coral_procs.coral("services", "--limit", "4", "-o", "json", env=colony.operator_env)
    assert json.loads(shown.stdout) == everything[:4]
    assert "showing the first 4 services; more match" in shown.stderr
    every = coral_procs.coral("services", "--limit", "0", "-o", "json",
                              env=colony.operator_env)
    assert len(json.loads(every.stdout)) == 36 and "more match" not in every.stderr


def test_unpaged_request_past_the_limit_is_refused_not_truncated(tmp_path):
    """A client before paging asking for more than UNPAGED_LIMIT matches gets
    FAILED_PRECONDITION naming page_size, never a silently short answer. (Shortcut: the
    registry is filled in-process before the colony starts; agents would take minutes.)"""
    colony = coral_procs.Colony(tmp_path / "colony")
    coral_procs.coral("colony", "init", "--data-dir", str(colony.data_dir), check=True)
    reg = registry.Registry(pki.ColonyFiles(colony.data_dir).registry_db)
    reg.replace_services("bulk", [mesh_pb2.ServiceInfo(component_name="s", port=i % 65536,
                                                       pod_name=f"p{i // 65536}")
                                  for i in range(paging.UNPAGED_LIMIT + 1)])
    reg.close()
    colony.start()
    try:
        with colony.client() as c:
            stub = colony_pb2_grpc.ColonyStub(c._channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListServices(colony_pb2.ListServicesRequest(), metadata=c._metadata,
                                  timeout=60)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "page_size" in refused.value.details()
            assert len(c.list_services(limit=2500)) == 2500
    finally:
        colony.stop()



def test_a_listing_is_answered_while_a_write_holds_the_registry(database):
    """`ListServices` p99 at 1,000,000 services: listings read on their own connection, so
    they never wait behind the writer (every heartbeat and registration commit). A write is
    held open here; the listing and its health still answer, and see the last commit."""
    import concurrent.futures
    import threading

    reg = filled(database("registry.db"))
    release = threading.Event()

    def held_write() -> None:
        with reg._lock:  # what a long registration holds while it writes
            release.wait(30)
    writer = threading.Thread(target=held_write)
    writer.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            rows = pool.submit(reg.services, FILTERS["label"]).result(timeout=10)
            health = pool.submit(reg.health_of, [(a, convert.service_key(s))
                                                 for a, s in rows]).result(timeout=10)
        assert len(rows) == 24 and health == {}
    finally:
        release.set()
        writer.join()
