"""Target resolution (pure): which agents/pods an operator's targeting selects."""

from __future__ import annotations

import pytest

from coral_lib._proto.coral.colony.v1 import colony_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import routing

AGENTS = [routing.AgentView("a1", "node-1", {"env": "prod"}),
          routing.AgentView("a2", "node-2", {"env": "dev"})]
SERVICES = [
    ("a1", mesh_pb2.ServiceInfo(component_name="api", port=80, labels={"tier": "web"},
                                namespace="shop", pod_name="api-1", container_name="app")),
    ("a1", mesh_pb2.ServiceInfo(component_name="api", port=81, labels={"tier": "web"},
                                namespace="shop", pod_name="api-1", container_name="app")),
    ("a2", mesh_pb2.ServiceInfo(component_name="db", port=5432, labels={"tier": "data"})),
]


def resolve(**kw):
    return [(t.agent_id, t.pod) for t in routing.resolve(
        colony_pb2.Targeting(**kw), agents=AGENTS, services=SERVICES)]


@pytest.mark.parametrize("targeting, expected", [
    ({"service": "api"}, [("a1", "api-1")]),   # two ports, one container: one target
    ({"selector": {"tier": "data"}}, [("a2", "")]),
    ({"selector": {"env": "prod"}}, [("a1", "api-1")]),  # agent labels count too
    ({"all": True}, [("a1", ""), ("a2", "")]),
    ({"agent": "a2"}, [("a2", "")]),
    ({"node": "node-1"}, [("a1", "")]),
    ({"pod": "api-1", "namespace": "shop"}, [("a1", "api-1")]),
])
def test_resolve(targeting, expected):
    assert resolve(**targeting) == expected


@pytest.mark.parametrize("targeting, message", [
    ({"service": "apj"}, "unknown service 'apj'; did you mean: api"),
    ({"agent": "a3"}, "unknown agent 'a3'"),
    ({}, "no targeting given"),
    ({"selector": {"tier": "none"}}, "no service or agent matches selector tier=none"),
])
def test_nothing_selected_is_a_clear_error(targeting, message):
    with pytest.raises(routing.NoTargets, match=message):
        resolve(**targeting)
