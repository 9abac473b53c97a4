"""Hand-driven agent identities for tests that talk to a real colony's Mesh service directly
(attackers, legacy clients, simulated agents): join with a join token, then call with the
same per-call proof the agent uses (coral_lib.agent.credentials)."""

from __future__ import annotations

import pathlib

import grpc

from coral_lib._proto.coral.mesh.v1 import mesh_pb2, mesh_pb2_grpc
from coral_lib.agent import credentials
from tests.support import coral_procs


def join_token(colony: coral_procs.Colony, agent_id: str, *, ttl: float = 600.0) -> str:
    with colony.client() as c:
        return c.create_join_token(agent_id, ttl=ttl)["token"]


class MeshAgent:
    """A Mesh client holding its own key and colony-issued certificate."""

    def __init__(self, colony: coral_procs.Colony, state_dir: pathlib.Path, name: str) -> None:
        self.colony = colony
        ca_pem = (colony.data_dir / "ca.crt").read_bytes()
        self.holder = credentials.Holder(state_dir, name, ca_pem=ca_pem)
        self.channel = credentials.channel(colony.address, ca_pem=ca_pem, holder=self.holder)
        self.stub = mesh_pb2_grpc.MeshStub(self.channel)
        self.name = name

    def join(self, token: str | None = None) -> credentials.Held:
        token = token if token is not None else join_token(self.colony, self.name)
        enroller = credentials.Enroller(self.stub, self.holder, name=self.name,
                                        join_token=lambda: token,
                                        service_account_token=lambda: "")
        return enroller.ensure()

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> MeshAgent:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bare_stub(colony: coral_procs.Colony) -> tuple[grpc.Channel, mesh_pb2_grpc.MeshStub]:
    """TLS only, no agent credentials (what an unauthenticated caller has)."""
    creds = grpc.ssl_channel_credentials((colony.data_dir / "ca.crt").read_bytes())
    chan = grpc.secure_channel(colony.address, creds)
    return chan, mesh_pb2_grpc.MeshStub(chan)


__all__ = ["MeshAgent", "bare_stub", "join_token", "mesh_pb2"]
