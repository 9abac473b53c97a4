"""Agents that go away leave the registry: deregistered (the agent said so on SIGTERM),
expired (unhealthy longer than agentExpiry) or pruned (an admin's `coral agents prune`).

Each departure removes the agent's services, pods and health from the registry (so fan-outs
and the inventory no longer see them), closes its link, and writes an `agent` audit record.
The registry remembers the departure, so targeting the agent by name answers "expired",
not "not connected", until it registers again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from coral_lib.colony import audit as audit_mod
from coral_lib.colony import links as links_mod
from coral_lib.colony import registry as registry_mod

log = logging.getLogger(__name__)

DEFAULT_EXPIRY = 900.0  # seconds: 15 minutes unhealthy, then the agent is expired
EVENTS = ("deregistered", "expired", "pruned")


def stale(agents: Iterable[registry_mod.AgentRow], *, now: float, older_than: float,
          connected: set[str]) -> list[str]:
    """Pure: the ids of agents without a link whose last heartbeat is older than
    `older_than` seconds."""
    return sorted(a.agent_id for a in agents
                  if a.agent_id not in connected and now - a.last_seen > older_than)


def remove(*, registry: registry_mod.Registry, audit: audit_mod.AuditLog,
           links: links_mod.Links, agent_id: str, event: str, by: str,
           detail: dict | None = None) -> int | None:
    """Remove one agent (see module doc); the number of services it had, None when it was
    not registered. The audit record is written first: no departure goes unrecorded."""
    agent = registry.get_agent(agent_id)
    if agent is None:
        return None
    audit.append("agent", {"event": event, "agent_id": agent_id, "by": by,
                           "node": agent.node_name, "last_seen": agent.last_seen,
                           **(detail or {})})
    count = registry.remove_agent(agent_id, event=event)
    link = links.get(agent_id)
    if link is not None:
        link.close()
    log.info("agent %s %s by %s (%s services removed)", agent_id, event, by, count)
    return count


def departed_message(agent_id: str, departed: tuple[str, float] | None) -> str:
    """Pure: how targeting a departed agent is answered ('' when it did not depart)."""
    if departed is None:
        return ""
    event, _when = departed
    reason = {"expired": "unhealthy longer than agentExpiry",
              "deregistered": "it deregistered when it stopped",
              "pruned": "removed with coral agents prune"}.get(event, event)
    return f"agent {agent_id!r} {event} ({reason}); it reappears when it registers again"
