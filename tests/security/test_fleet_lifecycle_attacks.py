"""Issue 16, the trust boundaries the fleet-lifecycle changes touch, played as an attacker:
an agent can deregister only itself (who it is comes from its certificate); only a
Kubernetes node agent's pod list is believed (a host or sidecar agent claiming pods is
ignored, so it cannot draw operations meant for other pods); `coral agents prune` is an
admin verb (tests/lifecycle/test_prune.py); unauthenticated Deregister is refused.
A real colony process; agents are hand-driven Mesh clients holding real certificates."""

from __future__ import annotations

import grpc
import pytest

from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from tests.support import agent_identity, coral_procs


def _agent_ids(colony) -> set[str]:
    with colony.client() as c:
        return {a["agent_id"] for a in c.list_agents()}


def test_an_agent_deregisters_only_itself_and_claimed_pods_are_ignored(tmp_path, colony):
    with agent_identity.MeshAgent(colony, tmp_path / "a", "vm-victim") as victim, \
            agent_identity.MeshAgent(colony, tmp_path / "b", "vm-attacker") as attacker:
        victim.join()
        attacker.join()
        victim.stub.Register(mesh_pb2.RegisterRequest(version="t"), timeout=10)
        claimed = [mesh_pb2.PodRef(namespace="payments", name="db-0", containers=["db"])]
        attacker.stub.Register(mesh_pb2.RegisterRequest(
            version="t", agent_id="vm-victim", pods=claimed), timeout=10)
        assert _agent_ids(colony) == {"vm-victim", "vm-attacker"}
        # a host agent's pod list is not believed: the pod is not a target
        run = coral_procs.coral("exec", "--pod", "db-0", "-n", "payments", "--", "true",
                                env=colony.operator_env)
        assert run.returncode != 0 and "db-0" in run.stderr, run.stderr
        # the request names the victim; the colony removes the caller (its certificate)
        reply = attacker.stub.Deregister(mesh_pb2.DeregisterRequest(reason="vm-victim"),
                                         timeout=10)
        assert reply.removed
        assert _agent_ids(colony) == {"vm-victim"}


def test_deregister_without_agent_credentials_is_refused(colony):
    chan, stub = agent_identity.bare_stub(colony)
    with chan, pytest.raises(grpc.RpcError) as refused:
        stub.Deregister(mesh_pb2.DeregisterRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
