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


# Issue 16 "Targeting every pod": pods a DaemonSet agent sees, with or without a service.
NODE_AGENTS = [routing.AgentView("node-a", "node-a", {}, {"zone": "z1"}, lists_pods=True),
               routing.AgentView("side", "node-b", {}, {})]
NODE_SERVICES = [
    ("node-a", mesh_pb2.ServiceInfo(component_name="web", port=80, namespace="shop",
                                    pod_name="web-1", container_name="app")),
    ("side", mesh_pb2.ServiceInfo(component_name="api", port=81, namespace="shop",
                                  pod_name="api-1", container_name="app")),
]
NODE_PODS = [
    ("node-a", mesh_pb2.PodRef(namespace="shop", name="web-1", containers=["app"])),
    ("node-a", mesh_pb2.PodRef(namespace="shop", name="batch-1", labels={"env": "prod"},
                               containers=["job"])),
    ("node-a", mesh_pb2.PodRef(namespace="ops", name="tool-1", containers=["sh"])),
]


def resolve_pods(**kw):
    return [(t.agent_id, t.namespace, t.pod, t.container) for t in routing.resolve(
        colony_pb2.Targeting(**kw), agents=NODE_AGENTS, services=NODE_SERVICES,
        pods=NODE_PODS)]


@pytest.mark.parametrize("targeting, expected", [
    # --pod reaches a pod without a registered service
    ({"pod": "batch-1", "namespace": "shop"}, [("node-a", "shop", "batch-1", "")]),
    ({"pod": "tool-1"}, [("node-a", "ops", "tool-1", "")]),
    # --namespace alone: every service and every pod in it, each pod once
    ({"namespace": "shop"}, [("node-a", "shop", "batch-1", ""), ("node-a", "shop", "web-1", "app"),
                             ("side", "shop", "api-1", "app")]),
    # --all: every pod a DaemonSet agent sees; other agents as before
    ({"all": True}, [("node-a", "ops", "tool-1", ""), ("node-a", "shop", "batch-1", ""),
                     ("node-a", "shop", "web-1", ""), ("side", "", "", "")]),
    ({"node": "node-a"}, [("node-a", "ops", "tool-1", ""), ("node-a", "shop", "batch-1", ""),
                          ("node-a", "shop", "web-1", "")]),
    # pod labels and node labels select too
    ({"selector": {"env": "prod"}}, [("node-a", "shop", "batch-1", "")]),
    ({"selector": {"zone": "z1"}, "namespace": "ops"}, [("node-a", "ops", "tool-1", "")]),
    # a container narrows the pods without a service to those that have it (a service's
    # pod is asked for the container, as before)
    ({"namespace": "shop", "container": "job"}, [("node-a", "shop", "batch-1", "job"),
                                                  ("node-a", "shop", "web-1", "job"),
                                                  ("side", "shop", "api-1", "job")]),
    # --service stays services only
    ({"service": "web"}, [("node-a", "shop", "web-1", "app")]),
])
def test_targeting_every_pod_a_daemonset_agent_sees(targeting, expected):
    assert resolve_pods(**targeting) == expected


def test_namespace_with_nothing_in_it_is_a_clear_error():
    with pytest.raises(routing.NoTargets, match="no service or pod in namespace 'empty'"):
        resolve_pods(namespace="empty")


@pytest.mark.parametrize("targeting", [
    {"all": True}, {"agent": "a2"}, {"node": "node-1"}, {"agent": "a1", "container": "app"},
    {"all": True, "node": "node-9"}, {"node": "node-9"}])
def test_agent_targeting_needs_no_services(targeting):
    """Issue 11 (a fan-out over all 3,000 agents with 1,000,000 services stored): the colony
    skips loading services when needs_services() says so; the outcome is the same."""
    msg = colony_pb2.Targeting(**targeting)
    assert not routing.needs_services(msg)

    def outcome(services):
        try:
            return routing.resolve(msg, agents=AGENTS, services=services)
        except routing.NoTargets as exc:
            return str(exc)
    assert outcome([]) == outcome(SERVICES)


@pytest.mark.parametrize("targeting", [
    {"service": "api"}, {"selector": {"tier": "web"}}, {"pod": "api-1"}, {"namespace": "shop"}])
def test_service_targeting_reads_services(targeting):
    assert routing.needs_services(colony_pb2.Targeting(**targeting))
