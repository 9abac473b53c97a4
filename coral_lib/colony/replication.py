"""One colony replica among several sharing PostgreSQL: membership, the replica port and
forwarding, wired onto a ColonyState (see replicas.py and replica_link.py for each part)."""

from __future__ import annotations

import dataclasses
import logging
import socket

from coral_lib.colony import links as links_mod
from coral_lib.colony import replica_link, replicas

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Replication:
    name: str
    membership: replicas.Membership
    server: replica_link.ReplicaServer
    forward: replica_link.Forwarder

    def close(self) -> None:
        self.forward.close()
        self.server.stop()
        self.membership.close()


def default_name(listen: str) -> str:
    return f"{socket.gethostname()}-{listen.rpartition(':')[2]}"


def attach(state, *, database: str, name: str, listen: str, advertise: str = "",
           interval: float = 1.0, dead_after: float = 5.0) -> Replication:
    """Join the replica set in `database` as `name`: serve the replica port on `listen`
    (others dial `advertise`, default the listen address) and set state.replication."""
    server_host = (advertise or listen).rpartition(":")[0].strip("[]") or "127.0.0.1"
    cert = replica_link.issue_replica_cert(state.files, colony_id=state.colony_id, name=name,
                                           host=server_host)
    server = replica_link.ReplicaServer(links=state.links, colony_id=state.colony_id,
                                        files=state.files, cert=cert, listen=listen)
    address = advertise or f"{server_host}:{server.port}"
    membership = replicas.Membership(database, name=name, address=address, audit=state.audit,
                                     connected=state.links.connected, interval=interval,
                                     dead_after=dead_after)
    state.links.observers.append(_recorder(membership))
    membership.on_beat.append(lambda: _revocations(state))
    forward = replica_link.Forwarder(holder=membership.holder,
                                     ca_pem=state.files.ca_cert.read_bytes(), cert=cert)
    state.replication = Replication(name=name, membership=membership, server=server.start(),
                                    forward=forward)
    membership.start()
    log.info("colony replica %s: replica port %s, %d replicas in the set", name, address,
             len(membership.replicas()))
    return state.replication


def _recorder(membership: replicas.Membership):
    def record(agent_id: str, linked: bool) -> None:
        (membership.linked if linked else membership.unlinked)(agent_id)
    return record


def _revocations(state) -> None:
    """A revocation made on another replica: refuse the agent here too, close its link."""
    for agent_id in state.enrollment.refresh_revoked():
        link: links_mod.AgentLink | None = state.links.get(agent_id)
        if link is not None:
            link.close()
            log.warning("agent %s revoked on another replica: link closed", agent_id)
