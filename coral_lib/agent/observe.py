"""What an agent tells its operators about itself: metrics (with --metrics-listen) and
liveness/readiness (with --health-listen), both plain HTTP on a local port.

Ready means the agent holds a registration with its colony, its operation link is
open, and its last discovery cycle completed recently. Live means the process answers
and is not stopping (a colony outage makes it unready, never unlive: restarting the
agent would not bring the colony back).

The agent records through a `Recorder`; without --metrics-listen it is `NULL`, so
prometheus_client is never imported by an agent that does not serve metrics.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable
from typing import Protocol

from coral_lib._proto.coral.mesh.v1 import mesh_pb2

PROVENANCE_NAMES = {mesh_pb2.SERVICE_PROVENANCE_UNKNOWN: "unknown",
                    mesh_pb2.SERVICE_PROVENANCE_EXPLICIT: "explicit",
                    mesh_pb2.SERVICE_PROVENANCE_DISCOVERED: "discovered",
                    mesh_pb2.SERVICE_PROVENANCE_OVERRIDDEN: "overridden"}
MIN_FRESH = 60.0  # seconds a discovery result stays fresh, at least


class Recorder(Protocol):
    def discovered(self, seconds: float, provenances: Iterable[str]) -> None: ...
    def operation(self, kind: str, seconds: float, outcome: str) -> None: ...
    def link(self, up: bool, *, reconnect: bool = False) -> None: ...


class _Null:
    def discovered(self, seconds: float, provenances: Iterable[str]) -> None:
        return None

    def operation(self, kind: str, seconds: float, outcome: str) -> None:
        return None

    def link(self, up: bool, *, reconnect: bool = False) -> None:
        return None


NULL: Recorder = _Null()


def provenances(services: Iterable[mesh_pb2.ServiceInfo]) -> list[str]:
    return [PROVENANCE_NAMES.get(s.provenance, "unknown") for s in services]


@dataclasses.dataclass
class Health:
    """Facts the agent updates as it runs; readiness is decided from them (pure)."""

    fresh_for: float = MIN_FRESH
    discovered_at: float | None = None  # time.monotonic() of the last completed cycle
    link: threading.Event = dataclasses.field(default_factory=threading.Event)
    registered: threading.Event = dataclasses.field(default_factory=threading.Event)
    stopping: threading.Event = dataclasses.field(default_factory=threading.Event)

    def ready(self) -> list[str]:
        return problems(registered=self.registered.is_set(), link_up=self.link.is_set(),
                        discovery_age=None if self.discovered_at is None
                        else time.monotonic() - self.discovered_at,
                        fresh_for=self.fresh_for, stopping=self.stopping.is_set())

    def live(self) -> list[str]:
        return ["the agent is stopping"] if self.stopping.is_set() else []


def problems(*, registered: bool, link_up: bool, discovery_age: float | None,
             fresh_for: float, stopping: bool = False) -> list[str]:
    """Why an agent is not ready; [] when it is. Pure."""
    found = []
    if stopping:
        found.append("the agent is stopping")
    if not registered:
        found.append("not registered with the colony")
    if not link_up:
        found.append("the operation link to the colony is down")
    if discovery_age is None:
        found.append("no discovery cycle has completed yet")
    elif discovery_age > fresh_for:
        found.append(f"discovery is stale: the last cycle completed {discovery_age:.0f}s ago "
                     f"(fresh for {fresh_for:.0f}s)")
    return found


def serve(agent, *, metrics_listen: str = "", health_listen: str = "",
          pod_watch_stats: object | None = None) -> list:
    """Start the agent's listeners (none when both are ''); sets agent.recorder when
    metrics are served. Raises endpoint.ListenError naming the flag."""
    if not metrics_listen and not health_listen:
        return []
    from coral_lib import endpoint

    listeners = []
    if metrics_listen:
        from coral_lib import metrics

        recorder = metrics.Agent()
        if pod_watch_stats is not None:
            recorder.watch_pods(pod_watch_stats)
        agent.recorder = recorder
        listeners.append(("--metrics-listen", metrics_listen,
                          endpoint.Routes(registry=recorder.registry)))
    if health_listen:
        listeners.append(("--health-listen", health_listen,
                          endpoint.Routes(live=agent.readiness.live, ready=agent.readiness.ready)))
    return endpoint.serve(listeners)
