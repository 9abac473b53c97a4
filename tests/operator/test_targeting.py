"""Issue 15: "operator.targeting is the one targeting builder whose validation matches
coral_lib/colony/routing.py" -- the CLI, the modules and the connection plugin accept
exactly the combinations the colony's router accepts."""

from __future__ import annotations

import itertools

import pytest

from coral_lib import errors
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import guard, routing
from coral_lib.operator import targeting

# one value per field, all naming the same (existing) agent, service and pod
VALUES = {"service": "api", "agent": "web-1", "selector": {"env": "test"}, "all": True,
          "pod": "shop-1", "namespace": "shop", "container": "app", "node": "node-a"}
AGENTS = [routing.AgentView(agent_id="web-1", node_name="node-a", labels={"env": "test"})]
SERVICES = [("web-1", mesh_pb2.ServiceInfo(
    component_name="api", port=8080, pod_name="shop-1", namespace="shop", container_name="app",
    node_name="node-a", labels={"env": "test"}))]


def _router_accepts(chosen: dict) -> bool:
    try:
        routing.resolve(targeting.Targeting(**chosen).to_proto(), agents=AGENTS,
                        services=SERVICES)
    except routing.NoTargets as exc:
        assert str(exc) == routing.NO_TARGETING, exc  # every named thing exists
        return False
    return True


def _builder_accepts(chosen: dict) -> bool:
    try:
        targeting.build(**chosen)
    except errors.NoTargets as exc:
        assert str(exc) == routing.NO_TARGETING
        return False
    return True


@pytest.mark.parametrize("size", range(len(VALUES) + 1))
def test_operator_targeting_accepts_exactly_what_the_colony_router_accepts(size):
    """Every combination of the eight targeting fields: the builder and the router agree
    (the old module rule refused e.g. service+all and pod alone, which the colony runs)."""
    for names in itertools.combinations(VALUES, size):
        chosen = {name: VALUES[name] for name in names}
        assert _builder_accepts(chosen) == _router_accepts(chosen), chosen


def test_targeting_combinations_the_old_module_rule_refused_are_accepted():
    assert targeting.build(service="api", all=True).service == "api"
    assert targeting.build(pod="shop-1", namespace="shop").pod == "shop-1"
    assert targeting.build(agent="web-1", selector={"env": "test"}).selector == {"env": "test"}


def test_targeting_container_alone_is_no_targeting():
    for narrow in ({"container": "app"}, {}):
        with pytest.raises(errors.NoTargets, match="no targeting given"):
            targeting.build(**narrow)


def test_targeting_namespace_alone_works():
    """Issue 16: "`--namespace` alone works" -- the builder and the router both accept it."""
    assert targeting.build(namespace="shop").namespace == "shop"
    assert _router_accepts({"namespace": "shop"})


def test_targeting_bad_names_are_refused_with_the_colony_message():
    """The same rule and text the colony answers INVALID_ARGUMENT with (guard)."""
    for bad in ({"pod": "Bad Pod"}, {"agent": "web-1", "container": "x" * 300},
                {"all": True, "selector": {"": "x"}}):
        with pytest.raises(errors.InvalidRequest) as refused:
            targeting.build(**bad)
        assert str(refused.value) == guard.targeting_problem(targeting.Targeting(
            **{k: v for k, v in bad.items()}))
        assert refused.value.kind == "InvalidRequest"


def test_targeting_from_module_params_takes_empty_values_as_not_given():
    params = {"service": "", "agent": None, "selector": {"env": 1}, "all": False, "pod": None,
              "namespace": "", "container": None, "node": None, "colony_token": "ignored"}
    built = targeting.from_mapping(params)
    assert built == targeting.Targeting(selector={"env": "1"})


def test_parse_labels_names_the_flag_and_value():
    assert targeting.parse_labels(["a=1", " b = 2 ", "c="], flag="--selector") == {
        "a": "1", "b": "2", "c": ""}
    with pytest.raises(errors.InvalidRequest, match="--label 'nokey': expected key=value"):
        targeting.parse_labels(["nokey"], flag="--label")
