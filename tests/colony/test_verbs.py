"""The one table from colony RPC to verb (issue 10 item 1): complete, closed, fixed by the RPC."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import coral_lib._proto as generated
from coral_lib.colony import rbac, server, verbs


def _services() -> dict[str, object]:
    """Every service descriptor of every generated *_pb2 module, by full name."""
    found = {}
    for info in pkgutil.walk_packages(generated.__path__, generated.__name__ + "."):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(info.name)
            for service in module.DESCRIPTOR.services_by_name.values():
                found[service.full_name] = service
    return found


def test_every_rpc_of_every_generated_service_has_a_verb_or_is_not_served_by_the_colony():
    services = _services()
    assert {verbs.COLONY_SERVICE, verbs.MESH_SERVICE} <= set(services)
    missing = [f"/{name}/{method.name}" for name, service in services.items()
               if name not in verbs.NOT_COLONY for method in service.methods
               if f"/{name}/{method.name}" not in verbs.RPC_VERBS]
    assert not missing, f"RPCs without a verb in coral_lib/colony/verbs.py: {missing}"


def test_the_table_names_no_rpc_that_does_not_exist():
    methods = {f"/{name}/{m.name}" for name, s in _services().items() for m in s.methods}
    assert set(verbs.RPC_VERBS) <= methods
    assert set(verbs.NOT_COLONY) <= set(_services())


def test_every_verb_is_known_and_mesh_rpcs_are_agent_verbs():
    assert set(verbs.RPC_VERBS.values()) <= set(verbs.VERBS)
    for method, verb in verbs.RPC_VERBS.items():
        if method.startswith(f"/{verbs.MESH_SERVICE}/"):
            assert verb in (verbs.AGENT_AUTH, verbs.BOOTSTRAP), method
        else:
            assert verb in (*rbac.VERBS, verbs.IDENTIFY), method


def test_the_servicers_implement_exactly_the_rpcs_in_the_table():
    for servicer, service in ((server.ColonyServicer, verbs.COLONY_SERVICE),
                              (server.MeshServicer, verbs.MESH_SERVICE)):
        rpcs = {m.split("/")[-1] for m in verbs.RPC_VERBS if m.startswith(f"/{service}/")}
        assert all(name in vars(servicer) for name in rpcs), (servicer, rpcs)


@pytest.mark.parametrize(("name", "verb"), [
    ("Operate", "exec"), ("Shell", "shell"), ("Tap", "tap"), ("Trace", "trace"),
    ("Decide", "approve"), ("ListAgents", "read"), ("WhoAmI", "identify")])
def test_operations_take_the_verb_of_their_rpc(name, verb):
    assert verbs.colony(name) == verb


@pytest.mark.parametrize("requested", ["read", "approve", "shell", "EXEC", "exec "])
def test_a_request_verb_that_disagrees_with_the_rpc_is_refused_naming_the_field(requested):
    reason = verbs.check_request_verb("/coral.colony.v1.Colony/Operate", requested)
    assert "'verb'" in reason and "exec" in reason


@pytest.mark.parametrize("requested", ["", "exec"])
def test_an_empty_or_agreeing_request_verb_is_accepted(requested):
    assert verbs.check_request_verb("/coral.colony.v1.Colony/Operate", requested) == ""


def test_an_unknown_method_has_no_verb():
    with pytest.raises(verbs.UnknownMethod, match="NewThing"):
        verbs.verb_of("/coral.colony.v1.Colony/NewThing")
