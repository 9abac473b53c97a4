"""Which agents (and pods/containers) an operator's targeting selects. Pure functions."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence

from coral_lib import errors, validate
from coral_lib._proto.coral.colony.v1 import colony_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2


class NoTargets(errors.NoTargets):
    """Targeting selected nothing. `message` says what was not found; `hint` names what
    exists that is close (only for callers who may list the registry anyway)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message + hint)
        self.message, self.hint = message, hint


NO_TARGETING = ("no targeting given: use a service, agent, selector, pod, namespace, node "
                "or all")
_TARGETING_NAMES = (("agent", "agent id"), ("service", "service"), ("namespace", "namespace"),
                    ("pod", "pod"), ("container", "container"), ("node", "node"))


def chosen(targeting) -> list[str]:
    """What selects targets in `targeting` (a Targeting message, or anything with the same
    attributes such as client.Targeting); namespace alone selects every service and pod
    in it; container only narrows."""
    kinds = [k for k in ("service", "agent", "pod", "node", "namespace")
             if getattr(targeting, k)]
    if targeting.all:
        kinds.append("all")
    if targeting.selector:
        kinds.append("selector")
    return kinds


def needs_services(targeting) -> bool:
    """Whether resolving `targeting` reads the registry's services: `--all`, `--agent`
    and `--node` alone select agents (and their pods), so a fan-out over every agent does
    not load every service of the registry."""
    return bool(targeting.pod or targeting.service or targeting.selector
                or targeting.namespace)


def targeting_problem(targeting) -> str:
    """'' when an operator's Targeting names only acceptable names (they reach agents and
    audit records when a pod is named directly), else the first problem."""
    try:
        for attr, kind in _TARGETING_NAMES:
            validate.check_name(kind, getattr(targeting, attr) or "",
                                field=f"targeting.{attr}", required=False)
        for key, value in (targeting.selector or {}).items():
            validate.check_name("label key", key, field="targeting.selector key")
            validate.check_name("label value", value, required=False,
                                field=f"targeting.selector[{validate.clip(key, 64)}]")
    except validate.InvalidName as exc:
        return str(exc)
    return ""


@dataclasses.dataclass(frozen=True)
class AgentView:
    agent_id: str
    node_name: str
    labels: dict[str, str]
    node_labels: dict[str, str] = dataclasses.field(default_factory=dict)
    lists_pods: bool = False  # a DaemonSet agent: it reports every pod of its node

    @property
    def all_labels(self) -> dict[str, str]:
        """What a selector sees of the agent: node labels, then the agent's own labels."""
        return {**self.node_labels, **self.labels}


def resolve(
    targeting: colony_pb2.Targeting,
    *,
    agents: Sequence[AgentView],
    services: Sequence[tuple[str, mesh_pb2.ServiceInfo]],
    pods: Sequence[tuple[str, mesh_pb2.PodRef]] = (),
) -> list[colony_pb2.Target]:
    """Targets for one operation, one per (agent, namespace, pod, container), in stable order.
    `pods` are the pods DaemonSet agents see: `--pod`, `--namespace`, a selector and
    `--all`/`--agent`/`--node` on such an agent reach them with or without a service."""
    if not chosen(targeting):
        raise NoTargets(NO_TARGETING)
    if targeting.agent and not any(a.agent_id == targeting.agent for a in agents):
        raise NoTargets(*_unknown("agent", targeting.agent, [a.agent_id for a in agents]))
    if needs_services(targeting):
        targets = _service_targets(targeting, agents=agents, services=services)
        if not targeting.service:
            targets = _merged(targets, _pod_targets(targeting, agents=agents, pods=pods))
        if not targets and targeting.agent and targeting.pod:
            # The operator named the agent: let it judge the pod (a sidecar refuses others').
            targets = [colony_pb2.Target(agent_id=targeting.agent, namespace=targeting.namespace,
                                         pod=targeting.pod, container=targeting.container)]
    else:
        targets = _agent_targets(targeting, agents, pods)
    if not targets:
        raise NoTargets(*_nothing_message(targeting, agents=agents, services=services))
    return targets


def _agent_targets(targeting: colony_pb2.Targeting, agents: Sequence[AgentView],
                   pods: Sequence[tuple[str, mesh_pb2.PodRef]] = ()):
    chosen = [
        a for a in agents
        if (not targeting.agent or a.agent_id == targeting.agent)
        and (not targeting.node or a.node_name == targeting.node)
    ]
    targets = []
    for agent in sorted(chosen, key=lambda a: a.agent_id):
        if agent.lists_pods:  # a DaemonSet agent: every pod it sees, not the node itself
            targets += _pod_targets(colony_pb2.Targeting(container=targeting.container),
                                    agents=[agent], pods=pods)
        else:
            targets.append(colony_pb2.Target(agent_id=agent.agent_id, node=agent.node_name,
                                             container=targeting.container))
    return targets


def _pod_targets(targeting: colony_pb2.Targeting, *, agents: Sequence[AgentView],
                 pods: Sequence[tuple[str, mesh_pb2.PodRef]]) -> list[colony_pb2.Target]:
    by_id = {a.agent_id: a for a in agents}
    out = []
    for agent_id, pod in pods:
        agent = by_id.get(agent_id)
        if agent is None or not _pod_matches(targeting, agent, pod):
            continue
        if targeting.container and pod.containers and targeting.container not in pod.containers:
            continue
        out.append(colony_pb2.Target(agent_id=agent_id, namespace=pod.namespace, pod=pod.name,
                                     container=targeting.container, node=agent.node_name))
    return sorted(out, key=_target_key)


def _target_key(target: colony_pb2.Target) -> tuple[str, str, str, str]:
    return (target.agent_id, target.namespace, target.pod, target.container)


def _pod_matches(targeting: colony_pb2.Targeting, agent: AgentView,
                 pod: mesh_pb2.PodRef) -> bool:
    checks = ((targeting.agent, agent.agent_id), (targeting.pod, pod.name),
              (targeting.namespace, pod.namespace), (targeting.node, agent.node_name))
    if any(want and want != have for want, have in checks):
        return False
    labels = {**agent.all_labels, **pod.labels}
    return all(labels.get(k) == v for k, v in targeting.selector.items())


def _merged(service_targets: list[colony_pb2.Target], pod_targets: list[colony_pb2.Target]
            ) -> list[colony_pb2.Target]:
    """Service targets, plus a pod target for each pod no service target reaches."""
    covered = {(t.agent_id, t.namespace, t.pod) for t in service_targets}
    extra = [t for t in pod_targets if (t.agent_id, t.namespace, t.pod) not in covered]
    return sorted(service_targets + extra, key=_target_key)


def _service_matches(targeting: colony_pb2.Targeting, agent: str, svc: mesh_pb2.ServiceInfo,
                     agent_labels: dict[str, str]) -> bool:
    checks = (
        (targeting.service, svc.component_name), (targeting.agent, agent),
        (targeting.pod, svc.pod_name), (targeting.namespace, svc.namespace),
        (targeting.node, svc.node_name),
    )
    if any(want and want != have for want, have in checks):
        return False
    labels = {**agent_labels, **svc.labels}
    return all(labels.get(k) == v for k, v in targeting.selector.items())


def _service_targets(targeting, *, agents, services) -> list[colony_pb2.Target]:
    by_id = {a.agent_id: a for a in agents}
    seen: dict[tuple, colony_pb2.Target] = {}
    for agent_id, svc in services:
        agent = by_id.get(agent_id)
        if agent is None or not _service_matches(targeting, agent_id, svc, agent.all_labels):
            continue
        container = targeting.container or svc.container_name
        key = (agent_id, svc.namespace, svc.pod_name, container)
        seen.setdefault(key, colony_pb2.Target(
            agent_id=agent_id, service=svc.component_name, namespace=svc.namespace,
            pod=svc.pod_name, container=container, node=svc.node_name or agent.node_name,
        ))
    return [seen[k] for k in sorted(seen)]


def _unknown(kind: str, name: str, known: Sequence[str]) -> tuple[str, str]:
    """(what was not found, the close matches or the known names)."""
    close = difflib.get_close_matches(name, sorted(set(known)), n=5, cutoff=0.5)
    hint = f"; did you mean: {', '.join(close)}" if close else ""
    listing = f" (known: {', '.join(sorted(set(known))[:20]) or 'none'})" if not close else ""
    return f"unknown {kind} {name!r}", hint + listing


def _nothing_message(targeting, *, agents, services) -> tuple[str, str]:
    if targeting.service:
        return _unknown("service", targeting.service, [s.component_name for _, s in services])
    if targeting.pod:
        return _unknown("pod", targeting.pod, [s.pod_name for _, s in services if s.pod_name])
    if targeting.namespace and not targeting.selector:
        return f"no service or pod in namespace {targeting.namespace!r}", ""
    if targeting.node:
        return _unknown("node", targeting.node, [a.node_name for a in agents if a.node_name])
    if targeting.selector:
        wanted = ",".join(f"{k}={v}" for k, v in sorted(targeting.selector.items()))
        return f"no service or agent matches selector {wanted}", ""
    return "no agents are registered", ""
