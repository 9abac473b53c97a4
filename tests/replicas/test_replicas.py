"""Issue 11, replicas: "N colony processes share one PostgreSQL. Each accepts agent links
and operator calls. An operation for an agent linked to another replica is forwarded to
that replica (a replica table with addresses and heartbeats; replica-to-replica calls over
mutual TLS). The audit log stays one verifiable chain across replicas."

Real `coral colony start --database` processes, real host agents, a real PostgreSQL.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json

import grpc
import pytest

from coral_lib import client
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib.colony import pki, replica_link
from tests.replicas.conftest import start_agents
from tests.support import coral_procs


def _linked(replica: coral_procs.Colony, ids: list[str]) -> bool:
    try:
        with replica.client() as c:
            agents = {a["agent_id"]: a for a in c.list_agents()}
    except client.CoralError:
        return False
    return all(agents.get(a, {}).get("connected") for a in ids)


def test_operation_forwarded_to_replica_holding_the_link(replica_set, tmp_path):
    replica_set.start(2)
    r0, r1 = replica_set.replicas
    agents = start_agents(tmp_path / "agents", [replica_set.view(0), replica_set.view(1)],
                          ["on-r0", "on-r1"])
    try:
        coral_procs.wait_for(lambda: _linked(r0, ["on-r0", "on-r1"]), timeout=40,
                             what="both agents linked, one per replica")
        for operator in (r0, r1):  # each replica accepts operator calls and forwards
            with operator.client() as c:
                outcome = c.exec(client.Targeting(all=True), argv=["echo", "hi"])
            assert [(r["agent"], r["status"], r["stdout"]) for r in outcome.results] == [
                ("on-r0", "ok", "hi\n"), ("on-r1", "ok", "hi\n")]
        with r0.client() as c:
            started = [r for r in c.audit() if r["kind"] == "started"]
        # the replica that ran each fan-out is named in its records
        assert collections.Counter(r["replica"] for r in started) == {"r0": 2, "r1": 2}
        assert "agent on-r1 linked" not in r0.log_path.read_text()  # r0 never held its link
        assert "agent on-r1 linked" in r1.log_path.read_text()
    finally:
        for agent in agents:
            agent.stop()


def _relay(address: str, ca: bytes, cert: tuple[bytes, bytes] | None) -> grpc.RpcError:
    creds = grpc.ssl_channel_credentials(root_certificates=ca,
                                         private_key=cert[1] if cert else None,
                                         certificate_chain=cert[0] if cert else None)
    with grpc.secure_channel(address, creds) as channel:
        call = channel.unary_unary(replica_link.METHOD,
                                   request_serializer=agent_pb2.ExecRequest.SerializeToString,
                                   response_deserializer=agent_pb2.ExecResult.FromString)
        with pytest.raises(grpc.RpcError) as info:
            call(agent_pb2.ExecRequest(argv=["id"]), timeout=10,
                 metadata=((replica_link.AGENT_KEY, "on-r0"),))
    return info.value


def test_replica_port_refuses_agents_operators_and_strangers(replica_set, tmp_path):
    """Attacker: an enrolled agent's certificate, an operator's client certificate, no
    certificate, or a replica certificate from another colony's CA cannot relay commands."""
    replica_set.start(1)
    (r0,) = replica_set.replicas
    (agent,) = start_agents(tmp_path / "agents", [replica_set.view(0)], ["on-r0"])
    try:
        coral_procs.wait_for(lambda: _linked(r0, ["on-r0"]), timeout=40, what="agent linked")
        address = replica_set.replicas_address(0)
        ca = (r0.data_dir / "ca.crt").read_bytes()
        files = pki.ColonyFiles(r0.data_dir)
        agent_cert = (agent.cert_path.read_bytes(),
                      (agent.state_dir / "on-r0.key").read_bytes())
        for cert in (agent_cert, pki.issue_client_cert(files, identity="admin")):
            assert _relay(address, ca, cert).code() == grpc.StatusCode.PERMISSION_DENIED
        assert _relay(address, ca, None).code() == grpc.StatusCode.UNAVAILABLE  # no handshake
        other = pki.ensure(tmp_path / "other-colony")
        foreign = replica_link.issue_replica_cert(other, colony_id=r0.colony_id, name="evil",
                                                  host="127.0.0.1")
        assert _relay(address, ca, foreign).code() == grpc.StatusCode.UNAVAILABLE
        assert "on-r0" in agent.log() or agent.proc.poll() is None  # nothing ran: still fine
    finally:
        agent.stop()


def test_audit_chain_verifies_across_replicas(replica_set, tmp_path):
    """Appends from three replicas at once form one HMAC chain (serialized in PostgreSQL by
    an advisory lock on the audit store): `coral audit verify` passes through each."""
    replica_set.start(3)
    agents = start_agents(tmp_path / "agents", [replica_set.view(i) for i in range(3)],
                          ["a0", "a1", "a2"])
    try:
        coral_procs.wait_for(lambda: _linked(replica_set.replicas[0], ["a0", "a1", "a2"]),
                             timeout=40, what="agents linked")

        def fan_out(replica: coral_procs.Colony) -> int:
            with replica.client() as c:
                return sum(len(c.exec(client.Targeting(all=True), argv=["true"]).results)
                           for _ in range(4))
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            assert list(pool.map(fan_out, replica_set.replicas)) == [12, 12, 12]
        for replica in replica_set.replicas:
            run = coral_procs.coral("audit", "verify", env=replica.operator_env)
            assert run.returncode == 0, run.stdout + run.stderr
            body = json.loads(run.stdout)
            assert body["ok"] and int(body["checked"]) >= 72
        with replica_set.replicas[2].client() as c:
            records = c.audit(limit=100000)
        assert [r["id"] for r in records] == list(range(1, len(records) + 1))
        assert {r.get("replica") for r in records if r["kind"] == "started"} == {
            "r0", "r1", "r2"}
    finally:
        for agent in agents:
            agent.stop()


def test_revocation_on_one_replica_closes_the_link_held_by_another(replica_set, tmp_path):
    """Attacker: a revoked agent linked to another replica than the one the admin called
    keeps no link and gets no further call through (revocations reach every replica)."""
    replica_set.start(2)
    r0, r1 = replica_set.replicas
    (agent,) = start_agents(tmp_path / "agents", [replica_set.view(1)], ["on-r1"])
    try:
        coral_procs.wait_for(lambda: _linked(r0, ["on-r1"]), timeout=40, what="agent linked")
        run = coral_procs.coral("agents", "revoke", "on-r1", env=r0.operator_env)
        assert run.returncode == 0, run.stderr
        coral_procs.wait_for(lambda: not _linked(r0, ["on-r1"]), timeout=15,
                             what="the revoked agent's link on r1 closed")
        with r0.client() as c:
            outcome = c.exec(client.Targeting(agent="on-r1"), argv=["id"])
        assert [r["status"] for r in outcome.results] != ["ok"]
        assert "revoked" in r1.log_path.read_text()
    finally:
        agent.stop()
