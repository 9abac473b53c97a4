"""Agent identity: ids and SPIFFE URIs, scope decisions, the per-call proof verifier, and
the colony's Kubernetes bootstrap hook.

The Kubernetes bootstrap is tested here at the unit level with a small in-test reviewer
object standing in for coral_lib.colony.tokenreview.TokenReviewer (TokenReview against the
API server fixture is built and tested separately); everything else is real: an
in-process colony serving gRPC over TLS on loopback, real SQLite, real certificates.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import grpc
import pytest

from coral_lib import identity
from coral_lib._proto.coral.mesh.v1 import mesh_pb2, mesh_pb2_grpc
from coral_lib.agent import credentials
from coral_lib.colony import agentauth, server

# -- ids, URIs, scope (pure) ----------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "Web", "a/b", "x" * 254, "node-1", "pod-ns.p", "-a",
                                 "a\nb", "a\x1b[31m"])
def test_host_ids_are_validated_and_kubernetes_prefixes_reserved(bad):
    with pytest.raises(identity.IdentityError):
        identity.check_host_id(bad)


def test_derived_ids_and_spiffe_uris_round_trip():
    cases = [identity.host_identity("web-1.example"), identity.node_identity("worker-2"),
             identity.pod_identity("shop", "api-7d9f")]
    assert [c.agent_id for c in cases] == ["web-1.example", "node-worker-2", "pod-shop.api-7d9f"]
    uris = [identity.spiffe_uri("colony-1", c) for c in cases]
    assert uris == ["spiffe://colony-1/host/web-1.example", "spiffe://colony-1/node/worker-2",
                    "spiffe://colony-1/ns/shop/pod/api-7d9f"]
    assert [identity.parse_spiffe(u, colony_id="colony-1") for u in uris] == cases
    with pytest.raises(identity.IdentityError, match="does not belong"):
        identity.parse_spiffe(uris[0], colony_id="colony-2")
    with pytest.raises(identity.IdentityError):
        identity.parse_spiffe("spiffe://colony-1/ns/a.b/pod/x", colony_id="colony-1")


NODE, POD, HOST = (identity.node_identity("n1"), identity.pod_identity("shop", "api-0"),
                   identity.host_identity("web-1"))


@pytest.mark.parametrize(("who", "fields", "ok"), [
    (NODE, dict(node_name="n1", namespace="shop", pod="api-0"), True),
    (NODE, dict(node_name="n2", namespace="shop", pod="api-0"), False),
    (POD, dict(node_name="n1", namespace="shop", pod="api-0"), True),
    (POD, dict(node_name="n1", namespace="shop", pod="api-1"), False),
    (POD, dict(node_name="n1", namespace="kube-system", pod="api-0"), False),
    (HOST, dict(node_name="web-1", namespace="", pod=""), True),
    (HOST, dict(node_name="vm", namespace="", pod="", host_node="vm"), True),
    (HOST, dict(node_name="", namespace="", pod=""), True),
    (HOST, dict(node_name="db-1", namespace="", pod="", host_node="vm"), False),
    (HOST, dict(node_name="web-1", namespace="shop", pod="api-0"), False),
])
def test_scope_violation(who, fields, ok):
    assert (identity.scope_violation(who, **fields) == "") is ok


# -- the colony, in process, with an in-test reviewer ------------------------------------


@dataclasses.dataclass(frozen=True)
class Claims:  # the shape of tokenreview.PodClaims
    namespace: str
    pod: str
    pod_uid: str
    node: str
    service_account: str


class InTestReviewer:
    """Stands in for TokenReviewer at the unit level: known tokens -> claims."""

    def __init__(self, tokens: dict[str, Claims]) -> None:
        self.tokens = tokens

    def review(self, token: str) -> Claims:
        if token not in self.tokens:
            raise ValueError("token not found")  # TokenRejected in the real one
        return self.tokens[token]


DAEMONSET = Claims("coral-system", "coral-agent-x1", "u1", "n1", "coral-agent")
SIDECAR = Claims("shop", "api-0", "u2", "n1", "default")


@pytest.fixture
def colony(tmp_path):
    reviewer = InTestReviewer({"ds-token": DAEMONSET, "pod-token": SIDECAR})
    state = server.open_state(data_dir=str(tmp_path / "colony"), reviewer=reviewer)
    running = server.ColonyServer(state, listen="127.0.0.1:0").start()
    yield running
    running.stop(0)


def _agent(colony, tmp_path, name):
    ca = colony.state.files.ca_cert.read_bytes()
    holder = credentials.Holder(tmp_path / name, name, ca_pem=ca)
    chan = credentials.channel(f"127.0.0.1:{colony.port}", ca_pem=ca, holder=holder)
    return chan, holder, mesh_pb2_grpc.MeshStub(chan)


def _join(stub, holder, *, sa="", token="", name="ignored-for-k8s"):
    enroller = credentials.Enroller(stub, holder, name=name,
                                    join_token=lambda: token, service_account_token=lambda: sa)
    return enroller.ensure()


def test_kubernetes_bootstrap_gives_node_and_pod_identities_with_their_scopes(colony,
                                                                              tmp_path):
    chan, holder, stub = _agent(colony, tmp_path, "ds")
    with chan:
        held = _join(stub, holder, sa="ds-token")
        assert held.agent_id == "node-n1"
        own = mesh_pb2.ServiceInfo(component_name="api", node_name="n1", namespace="shop",
                                   pod_name="api-0")
        other = mesh_pb2.ServiceInfo(component_name="api", node_name="n2", namespace="shop",
                                     pod_name="api-9")
        assert stub.Register(mesh_pb2.RegisterRequest(node_name="n1", services=[own]),
                             timeout=10).accepted
        refused = stub.Register(mesh_pb2.RegisterRequest(node_name="n1", services=[other]),
                                timeout=10)
        assert not refused.accepted and "not of node 'n2'" in refused.reason
        refused = stub.Register(mesh_pb2.RegisterRequest(node_name="n2", services=[]),
                                timeout=10)
        assert not refused.accepted
    chan, holder, stub = _agent(colony, tmp_path, "sc")
    with chan:
        assert _join(stub, holder, sa="pod-token").agent_id == "pod-shop.api-0"
        mine = mesh_pb2.ServiceInfo(component_name="api", node_name="n1", namespace="shop",
                                    pod_name="api-0")
        theirs = mesh_pb2.ServiceInfo(component_name="db", node_name="n1", namespace="shop",
                                      pod_name="db-0")
        assert stub.Register(mesh_pb2.RegisterRequest(services=[mine]), timeout=10).accepted
        assert not stub.Register(mesh_pb2.RegisterRequest(services=[theirs]),
                                 timeout=10).accepted
    # A host agent may not claim the node a node identity holds.
    token, _ = colony.state.enrollment.create_token("web-1", created_by="test")
    chan, holder, stub = _agent(colony, tmp_path, "web-1")
    with chan:
        _join(stub, holder, token=token, name="web-1")
        reply = stub.Register(mesh_pb2.RegisterRequest(node_name="n1", services=[
            mesh_pb2.ServiceInfo(component_name="x", node_name="n1")]), timeout=10)
        assert not reply.accepted and "Kubernetes node agent holds it" in reply.reason
    refused = colony.state.audit.list(kind="refused")
    assert {r["requester"] for r in refused} >= {"agent:node-n1", "agent:pod-shop.api-0",
                                                 "agent:web-1"}


def test_kubernetes_bootstrap_refuses_unknown_tokens_and_revoked_ids(colony, tmp_path):
    chan, holder, stub = _agent(colony, tmp_path, "x")
    with chan:
        with pytest.raises(grpc.RpcError) as bad:
            _join(stub, holder, sa="forged")
        assert bad.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _join(stub, holder, sa="ds-token").agent_id == "node-n1"
        colony.state.enrollment.revoke("node-n1", by="test")
        with pytest.raises(grpc.RpcError) as revoked:
            stub.Heartbeat(mesh_pb2.HeartbeatRequest(), timeout=10)
        assert revoked.value.code() == grpc.StatusCode.PERMISSION_DENIED
        holder.discard()
        with pytest.raises(grpc.RpcError) as rejoin:
            _join(stub, holder, sa="ds-token")
        assert "revoked" in rejoin.value.details()
        # The documented rule: an admin lifts it with a join token for that id.
        colony.state.enrollment.create_token("node-n1", created_by="test")
        assert _join(stub, holder, sa="ds-token").agent_id == "node-n1"
        assert stub.Heartbeat(mesh_pb2.HeartbeatRequest(), timeout=10).reregister


def test_without_a_reviewer_kubernetes_bootstrap_is_refused_clearly(tmp_path):
    state = server.open_state(data_dir=str(tmp_path / "colony"))
    running = server.ColonyServer(state, listen="127.0.0.1:0").start()
    try:
        chan, holder, stub = _agent(running, tmp_path, "x")
        with chan, pytest.raises(grpc.RpcError) as refused:
            _join(stub, holder, sa="ds-token")
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "Kubernetes bootstrap is disabled" in refused.value.details()
    finally:
        running.stop(0)


def test_join_rejects_bad_csr_without_burning_the_token(colony, tmp_path):
    token, _ = colony.state.enrollment.create_token("web-2", created_by="test")
    chan, holder, stub = _agent(colony, tmp_path, "web-2")
    with chan:
        with pytest.raises(grpc.RpcError) as bad:
            stub.Join(mesh_pb2.JoinRequest(join_token=token, csr_der=b"junk"), timeout=10)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as other_id:
            stub.Join(mesh_pb2.JoinRequest(join_token=token, agent_id_hint="web-3",
                                           csr_der=credentials.new_key_and_csr("x")[1]),
                      timeout=10)
        assert "not web-3" in other_id.value.details()
        assert _join(stub, holder, token=token, name="web-2").agent_id == "web-2"


# -- the verifier alone ---------------------------------------------------------------------


def test_verifier_bounds_its_nonce_cache(tmp_path, monkeypatch):
    state = server.open_state(data_dir=str(tmp_path / "colony"))
    try:
        from coral_lib.agent import credentials as creds
        key, csr = creds.new_key_and_csr("v")
        token, _ = state.enrollment.create_token("v-1", created_by="t")
        issued = state.enrollment.join(join_token=token, service_account_token="",
                                       csr_der=csr, hint="", peer="test")
        from cryptography import x509
        held = creds.Held(key, x509.load_pem_x509_certificate(issued.certificate_pem), "v-1")
        monkeypatch.setattr(agentauth, "MAX_NONCES", 5)
        verifier = agentauth.Verifier(ca_cert=state.enrollment.ca_certificate,
                                      colony_id=state.colony_id,
                                      revoked_at=state.enrollment.revoked_at)
        for _ in range(20):
            meta = dict(creds.proof_metadata(held, "/m"))
            assert verifier.verify("/m", meta).agent_id == "v-1"
        assert len(verifier._nonces) <= 5
        with pytest.raises(agentauth.AuthError, match="already used"):
            verifier.verify("/m", meta)
        meta = dict(creds.proof_metadata(held, "/m", now=time.time() + 500))
        with pytest.raises(agentauth.AuthError, match="clock"):
            verifier.verify("/m", meta)
    finally:
        state.close()


def test_a_link_ends_when_its_certificate_expires_unrenewed(tmp_path):
    state = server.open_state(data_dir=str(tmp_path / "colony"), agent_cert_ttl=10)
    running = server.ColonyServer(state, listen="127.0.0.1:0").start()
    try:
        token, _ = state.enrollment.create_token("short-1", created_by="test")
        chan, holder, stub = _agent(running, tmp_path, "short-1")
        with chan:
            held = _join(stub, holder, token=token, name="short-1")
            done = threading.Event()

            def agent_side():  # keeps its half of the stream open, as an agent does
                yield mesh_pb2.AgentMessage(hello=mesh_pb2.LinkHello())
                done.wait(30)

            stream = stub.Link(agent_side(), timeout=30)
            deadline = time.time() + 5
            while "short-1" not in state.links.connected() and time.time() < deadline:
                time.sleep(0.1)
            assert "short-1" in state.links.connected()
            assert list(stream) == []  # the colony ends the stream
            assert time.time() >= held.not_after
            assert "short-1" not in state.links.connected()
            done.set()
    finally:
        running.stop(0)


def test_refused_joins_are_audited_within_a_budget(colony, tmp_path):
    """Join is unauthenticated: a flood of bad joins may not write a record each."""
    colony.state.enrollment._refusals.per_minute = 10
    chan, _, stub = _agent(colony, tmp_path, "flood")
    with chan:
        for _ in range(40):
            with pytest.raises(grpc.RpcError):
                stub.Join(mesh_pb2.JoinRequest(join_token="coral-join-nope",
                                               csr_der=credentials.new_key_and_csr("x")[1]),
                          timeout=10)
    joins = [r for r in colony.state.audit.list(kind="refused") if r["verb"] == "join"]
    assert 10 <= len(joins) <= 20  # 20: the run may straddle a minute
    assert all(len(r["reason"]) < 400 for r in joins)


def test_refused_agent_calls_are_reported_with_the_peer(tmp_path):
    """The hook the per-peer failed-login throttle plugs into."""
    seen = []
    state = server.open_state(data_dir=str(tmp_path / "colony"))
    state.agent_auth.on_refused = lambda peer, method, reason: seen.append((peer, method, reason))
    running = server.ColonyServer(state, listen="127.0.0.1:0").start()
    try:
        ca = state.files.ca_cert.read_bytes()
        with grpc.secure_channel(f"127.0.0.1:{running.port}",
                                 grpc.ssl_channel_credentials(ca)) as chan:
            with pytest.raises(grpc.RpcError):
                mesh_pb2_grpc.MeshStub(chan).Heartbeat(mesh_pb2.HeartbeatRequest(), timeout=10)
    finally:
        running.stop(0)
    assert len(seen) == 1 and seen[0][0].startswith("ipv4:127.0.0.1:")
    assert seen[0][1] == "/coral.mesh.v1.Mesh/Heartbeat" and "no agent credentials" in seen[0][2]
