"""ListServices answers built from the stored ServiceInfo bytes (issue 11, Benchmarks:
"`ListServices` p99 at 1,000,000 services"; colony/service_page.py): the answer is the
same message the colony built record by record before, on SQLite and PostgreSQL, with
health, page tokens and bodies whose lengths need multi-byte varints."""

from __future__ import annotations

import json

import pytest

from coral_lib import convert
from coral_lib._proto.coral.colony.v1 import colony_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import paging, registry, service_page
from tests.colony.test_service_pages import FILTERS, services_of


def _old_answer(reg: registry.Registry, flt: registry.ServiceFilter, *, after, limit: int
                ) -> colony_pb2.ListServicesResponse:
    """What ListServices answered before: parsed services, one ServiceRecord each."""
    rows = reg.services(flt, after=after, limit=limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    keys = [(agent_id, convert.service_key(svc)) for agent_id, svc in rows]
    health = reg.health_of(keys)
    return colony_pb2.ListServicesResponse(
        services=[colony_pb2.ServiceRecord(agent_id=key[0], service=svc, health=health.get(key))
                  for key, (_, svc) in zip(keys, rows, strict=True)],
        next_page_token=paging.encode(*keys[-1]) if more else "")


def _new_answer(reg: registry.Registry, flt: registry.ServiceFilter, *, after, limit: int
                ) -> colony_pb2.ListServicesResponse:
    """What server.ListServices answers now."""
    rows = reg.service_rows(flt, after=after, limit=limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    keys = [(agent_id, key) for agent_id, key, _ in rows]
    return service_page.response(rows, reg.health_of(keys),
                                 paging.encode(*keys[-1]) if more else "")


def _filled(where) -> registry.Registry:
    reg = registry.Registry(where)
    for agent in range(4):
        services = services_of(agent)
        if agent == 1:  # a body over 16 KiB: its length is a three-byte varint
            services.append(mesh_pb2.ServiceInfo(
                component_name="big", port=1, namespace="ns-1", pod_name="big",
                labels={f"k{i}": "v" * 200 for i in range(100)}, sources={"port": "override"}))
        reg.replace_services(f"agent-{agent}", services)
        reg.set_health(f"agent-{agent}", [mesh_pb2.ServiceHealth(
            service_key=convert.service_key(svc), state="healthy", last_check=1.5,
            last_error="") for svc in services[::3]])
    return reg


@pytest.mark.parametrize("name", FILTERS)
def test_answer_from_stored_bytes_equals_the_record_by_record_answer(database, name):
    reg = _filled(database("registry.db"))
    for limit in (1, 5, 1000):
        after, pages = None, 0
        while True:
            old = _old_answer(reg, FILTERS[name], after=after, limit=limit)
            new = _new_answer(reg, FILTERS[name], after=after, limit=limit)
            assert new == old
            assert new.SerializeToString(deterministic=True) == old.SerializeToString(
                deterministic=True)
            pages += 1
            if not new.next_page_token:
                break
            after = paging.decode(new.next_page_token)
        assert pages >= 1
    assert any(r.HasField("health") for r in _new_answer(
        reg, registry.ServiceFilter(), after=None, limit=1000).services)


def test_service_rows_name_the_stored_key_of_each_service(database):
    reg = _filled(database("registry.db"))
    parsed = reg.services(registry.ServiceFilter())
    rows = reg.service_rows(registry.ServiceFilter())
    assert [(a, k) for a, k, _ in rows] == [(a, convert.service_key(s)) for a, s in parsed]
    assert [mesh_pb2.ServiceInfo.FromString(body) for _, _, body in rows] == [
        s for _, s in parsed]


def test_empty_page_and_non_ascii_agent_ids():
    assert service_page.response([], {}) == colony_pb2.ListServicesResponse()
    body = mesh_pb2.ServiceInfo(component_name="wëb", port=80).SerializeToString()
    answer = service_page.response([("agent-ü", "k", body)], {}, "tok")
    assert answer.services[0].agent_id == "agent-ü"
    assert answer.services[0].service.component_name == "wëb"
    assert not answer.services[0].HasField("health")
    assert answer.next_page_token == "tok"


def test_registration_rows_keep_every_label_byte_for_byte(database):
    """PostgreSQL writes a registration's rows from one JSON parameter (registry._PG_INSERT):
    labels with quotes, backslashes and non-ASCII text are found by label as on SQLite."""
    reg = registry.Registry(database("registry.db"))
    odd = {"tiér": 'we"b\\x ü∑', "app": "a'b"}
    svc = mesh_pb2.ServiceInfo(component_name="s", port=1, namespace="ns", labels=odd)
    reg.replace_services("agent-é", [svc, mesh_pb2.ServiceInfo(component_name="t", port=2)])
    for pair in odd.items():
        found = reg.services(registry.ServiceFilter(labels=dict([pair])))
        assert found == [("agent-é", svc)]
    assert reg.service_counts() == {"agent-é": 2}
    with reg._read_lock:  # the labels column holds json.dumps of the dict on both backends
        stored = dict(reg._reader.execute("SELECT key, labels FROM services").fetchall())
    # a protobuf map iterates in no set order, so the text is json.dumps of the message's map
    assert stored == {"ns///s:1": json.dumps(dict(svc.labels)), "///t:2": json.dumps({})}
    assert json.loads(stored["ns///s:1"]) == odd
    reg.replace_services("agent-é", [svc])  # one removed: the count follows the set
    assert reg.service_counts() == {"agent-é": 1}
    assert reg.services(registry.ServiceFilter(name="t")) == []
