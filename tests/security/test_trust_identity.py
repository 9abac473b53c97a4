"""Issue 10, "Agent impersonation" and per-agent identity, against real processes: a real
colony and real agents over TLS on loopback, attackers driving the Mesh service by hand.

On the code before this change every test here fails: there was no Join/Renew, a shared
colony secret authenticated any agent id (a second Link with the same id replaced the
first), and Register took agent id and services from the request body.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time

import grpc
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from coral_lib import identity
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.agent import credentials
from tests.security import conftest
from tests.support import agent_identity, coral_procs

API = {"name": "api", "port": 18090, "labels": {"env": "staging"}}


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    """A colony and one real host agent, `victim-1` (service api, env=staging).

    Shortcut, named: every attack here comes from 127.0.0.1, as do the honest agents, so
    the per-address failed-login throttle (tested in test_trust_limits.py) is raised for
    this module; otherwise the attacks of one test would throttle the joins of the next."""
    tmp = tmp_path_factory.mktemp("trust")
    tmp.joinpath("colony.yaml").write_text('{"limits": {"loginFailures": 1000}}')
    colony = conftest.PolicyColony(tmp / "colony",
                                   args=("--config", str(tmp / "colony.yaml"))).start()
    victim = coral_procs.Agent(tmp / "agents", colony, agent_id="victim-1", services=[API])
    victim.start()
    coral_procs.wait_registered(colony, ["victim-1"])
    colony.victim, colony.tmp = victim, tmp
    yield colony
    victim.stop()
    colony.stop()


def _audit(colony, **filters) -> list[dict]:
    with colony.client() as c:
        return c.audit(**filters)


def _exec(colony, *args) -> coral_procs.subprocess.CompletedProcess:
    return coral_procs.coral("exec", "-o", "json", *args, env=colony.operator_env)


def _outputs(run) -> list[tuple[str, str]]:
    rows = json.loads(run.stdout)["results"]
    return [(r["agent"], r["stdout"]) for r in rows]


def _call(stub_method, request, metadata=()):
    try:
        return stub_method(request, metadata=metadata, timeout=10), None
    except grpc.RpcError as exc:
        return None, exc


# -- impersonation ------------------------------------------------------------------------


def test_review_impostor_with_another_agents_id_cannot_take_over_its_link(trust, tmp_path):
    """An enrolled agent (`evil-1`) claims victim-1's id in every request field, and an
    agent holding a second certificate for victim-1 opens a second link: neither gets the
    victim's operations, nor can answer them."""
    with agent_identity.MeshAgent(trust, tmp_path, "evil-1") as evil:
        evil.join()
        reply = evil.stub.Register(mesh_pb2.RegisterRequest(
            agent_id="victim-1", colony_id=trust.colony_id, colony_secret="x",
            services=[mesh_pb2.ServiceInfo(component_name="api", port=18090,
                                           labels={"env": "production"})]), timeout=10)
        assert reply.accepted and reply.agent_id == "evil-1"  # the certificate decides
        with trust.client() as c:
            victim_services = c.list_services(agent="victim-1")
        assert [s["labels"].get("env") for s in victim_services
                if s["component_name"] == "api"] == ["staging"]

        # Its link, hello naming the victim; it tries to answer ops meant for the victim.
        stop = threading.Event()

        def forged():
            yield mesh_pb2.AgentMessage(hello=mesh_pb2.LinkHello(agent_id="victim-1"))
            for n in range(1, 200):
                if stop.wait(0.02):
                    return
                yield mesh_pb2.AgentMessage(op_id=f"victim-1/{n}", exec_result=_forged_result())

        seen: list = []
        evil_link = evil.stub.Link(forged())
        reader = threading.Thread(target=lambda: seen.extend(_drain(evil_link)), daemon=True)
        reader.start()
        coral_procs.wait_for(lambda: "evil-1" in _connected(trust), what="evil-1 linked")
        run = _exec(trust, "--agent", "victim-1", "--", "echo", "from-the-real-victim")
        stop.set()
        evil_link.cancel()
        reader.join(5)
    assert run.returncode == 0, run.stderr
    assert _outputs(run) == [("victim-1", "from-the-real-victim\n")]
    assert not [m for m in seen if m.WhichOneof("body") == "exec"]

    # A second certificate for victim-1 (an admin issued a second token): second link refused.
    with agent_identity.MeshAgent(trust, tmp_path / "twin", "victim-1") as twin:
        twin.join()
        with pytest.raises(grpc.RpcError) as refused:
            list(twin.stub.Link(iter([mesh_pb2.AgentMessage(hello=mesh_pb2.LinkHello())]),
                                timeout=10))
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "victim-1" in _connected(trust)
    records = [r for r in _audit(trust, kind="refused", requester="agent:victim-1")
               if r["verb"] == "link"]
    assert records and records[-1]["rule"] == "agent-link"
    run = _exec(trust, "--agent", "victim-1", "--", "echo", "still-the-victim")
    assert _outputs(run) == [("victim-1", "still-the-victim\n")]


def _forged_result():
    from coral_lib._proto.coral.agent.v1 import agent_pb2
    return agent_pb2.ExecResult(exit_code=0, stdout=b"from-the-real-victim\nFORGED\n")


def _drain(stream) -> list:
    out = []
    try:
        for msg in stream:
            out.append(msg)
    except grpc.RpcError:
        pass
    return out


def _connected(colony) -> set[str]:
    with colony.client() as c:
        return {a["agent_id"] for a in c.list_agents() if a["connected"]}


@pytest.mark.parametrize(("name", "service"), [
    ("scope-pod", mesh_pb2.ServiceInfo(component_name="pay", namespace="prod",
                                       pod_name="pay-0", labels={"env": "production"})),
    ("scope-node", mesh_pb2.ServiceInfo(component_name="pay", node_name="other-host")),
])
def test_review_agent_cannot_register_services_outside_its_scope(trust, tmp_path, name,
                                                                 service):
    """A host identity registers only its own host's services: a Kubernetes pod's or
    another node's are refused and audited. (Node and sidecar identities: the unit tests
    in tests/colony/test_agent_identity.py.)"""
    with agent_identity.MeshAgent(trust, tmp_path, name) as agent:
        agent.join()
        reply = agent.stub.Register(mesh_pb2.RegisterRequest(
            node_name="scope-host", services=[service]), timeout=10)
        assert not reply.accepted
        assert name in reply.reason
        ok = agent.stub.Register(mesh_pb2.RegisterRequest(node_name="scope-host", services=[
            mesh_pb2.ServiceInfo(component_name="own", node_name="scope-host")]), timeout=10)
        assert ok.accepted
        beat = agent.stub.Heartbeat(mesh_pb2.HeartbeatRequest(
            services_changed=True, services=[service]), timeout=10)
        assert not beat.ok
    with trust.client() as c:
        assert [s["component_name"] for s in c.list_services(agent=name)] == ["own"]
    refused = _audit(trust, kind="refused", requester=f"agent:{name}")
    assert {r["verb"] for r in refused} == {"register", "heartbeat"}
    assert all(r["rule"] == "agent-scope" for r in refused)


# -- join tokens --------------------------------------------------------------------------


def test_review_join_token_works_once_then_is_refused_and_expires(trust, tmp_path):
    run = coral_procs.coral("colony", "join-token", "create", "--agent-id", "once-1", "--ttl",
                            "2s", env=trust.operator_env)
    assert run.returncode == 0, run.stderr
    token = run.stdout.strip()
    with agent_identity.MeshAgent(trust, tmp_path / "a", "once-1") as first:
        assert first.join(token).agent_id == "once-1"
    with agent_identity.MeshAgent(trust, tmp_path / "b", "once-1") as second:
        with pytest.raises(grpc.RpcError) as again:
            second.join(token)
    assert again.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "already used" in again.value.details()
    late = agent_identity.join_token(trust, "late-1", ttl=1)
    time.sleep(1.5)
    with agent_identity.MeshAgent(trust, tmp_path / "c", "late-1") as agent:
        with pytest.raises(grpc.RpcError) as expired:
            agent.join(late)
    assert expired.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in expired.value.details()
    # Stored as a hash only; creation, redemption and refusals are audited, without tokens.
    stored = (trust.data_dir / "identity.db").read_bytes()
    assert token.encode() not in stored and late.encode() not in stored
    records = _audit(trust)
    text = json.dumps(records)
    assert token not in text and late not in text
    events = [(r["kind"], r.get("event"), r.get("agent_id")) for r in records]
    assert ("identity", "join-token-created", "once-1") in events
    assert ("identity", "joined", "once-1") in events
    assert [r for r in records if r["kind"] == "refused" and r["verb"] == "join"
            and "already used" in r["reason"]]
    bad = coral_procs.coral("colony", "join-token", "create", "--agent-id", "node-x",
                            env=trust.operator_env)
    assert bad.returncode == 1 and "service account token" in bad.stderr


# -- certificates that must not work ------------------------------------------------------


def _cert(*, issuer_key, issuer_name, uri: str, key, days: float = 1.0,
          start_days: float = 0.0) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name or subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=start_days))
            .not_valid_after(now + datetime.timedelta(days=start_days + days))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(issuer_key, hashes.SHA256()))


def _register_with(colony, key, cert) -> grpc.RpcError | None:
    held = credentials.Held(key, cert, "victim-1")
    meta = credentials.proof_metadata(held, "/coral.mesh.v1.Mesh/Register")
    chan, stub = agent_identity.bare_stub(colony)
    with chan:
        _, err = _call(stub.Register, mesh_pb2.RegisterRequest(), meta)
    return err


def test_review_foreign_self_signed_and_expired_certificates_are_refused(trust, tmp_path):
    uri = f"spiffe://{trust.colony_id}/host/victim-1"
    key = ec.generate_private_key(ec.SECP256R1())
    # Self-signed, naming the victim.
    err = _register_with(trust, key, _cert(issuer_key=key, issuer_name=None, uri=uri, key=key))
    assert err and err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "not issued by this colony" in err.details()
    # Issued by another colony's CA (a real colony, joined properly there).
    other = coral_procs.Colony(tmp_path / "other").start()
    try:
        with agent_identity.MeshAgent(other, tmp_path / "o", "victim-1") as there:
            held = there.join()
        foreign_token = agent_identity.join_token(other, "victim-1")
    finally:
        other.stop()
    err = _register_with(trust, held.key, held.cert)
    assert err and err.code() == grpc.StatusCode.UNAUTHENTICATED
    # ... and its join token means nothing here.
    with agent_identity.MeshAgent(trust, tmp_path / "t", "victim-1") as here:
        with pytest.raises(grpc.RpcError) as unknown:
            here.join(foreign_token)
    assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "unknown join token" in unknown.value.details()
    # Expired, though signed by this colony's CA (a test shortcut: the attacker in the
    # review has no CA key; this checks the validity window alone).
    ca_key = serialization.load_pem_private_key((trust.data_dir / "ca.key").read_bytes(), None)
    ca_name = x509.load_pem_x509_certificate((trust.data_dir / "ca.crt").read_bytes()).subject
    err = _register_with(trust, key, _cert(issuer_key=ca_key, issuer_name=ca_name, uri=uri,
                                           key=key, days=1, start_days=-2))
    assert err and err.code() == grpc.StatusCode.UNAUTHENTICATED and "expired" in err.details()
    # Valid, but for another colony id inside this CA's namespace: refused too.
    err = _register_with(trust, key, _cert(issuer_key=ca_key, issuer_name=ca_name,
                                           uri="spiffe://colony-other/host/victim-1", key=key))
    assert err and "does not belong to colony" in err.details()


def test_review_revoked_agent_is_refused_on_its_next_call(trust, tmp_path):
    agent = coral_procs.Agent(trust.tmp / "agents", trust, agent_id="revoke-me",
                              services=[{"name": "rv", "port": 18091}]).start()
    try:
        coral_procs.wait_registered(trust, ["revoke-me"])
        with agent_identity.MeshAgent(trust, tmp_path, "revoke-me") as copy:
            # An attacker holding a copy of the agent's key + certificate.
            copy.holder.key_path = agent.state_dir / "revoke-me.key"
            copy.holder.cert_path = agent.state_dir / "revoke-me.crt"
            assert copy.holder.load() is not None
            assert copy.stub.Heartbeat(mesh_pb2.HeartbeatRequest(), timeout=10).ok
            run = coral_procs.coral("agents", "revoke", "revoke-me", env=trust.operator_env)
            assert run.returncode == 0, run.stderr
            assert json.loads(run.stdout)["link_closed"] is True
            _, err = _call(copy.stub.Heartbeat, mesh_pb2.HeartbeatRequest())
        assert err and err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "revoked" in err.details()
        time.sleep(2)  # the agent retries its link: refused every time
        assert "revoke-me" not in _connected(trust)
        assert "revoked" in trust.log_path.read_text()
        # A new join token (created after the revocation) re-admits a host.
        agent.stop()
        for leftover in agent.state_dir.glob("revoke-me.*"):
            leftover.unlink()
        agent.start()
        coral_procs.wait_registered(trust, ["revoke-me"])
    finally:
        agent.stop()
    events = [r.get("event") for r in _audit(trust, kind="identity") if
              r.get("agent_id") == "revoke-me"]
    assert "revoked" in events and events.count("joined") == 2


def test_review_revoke_is_an_admin_verb(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"rules": [
        {"name": "admins-all", "groups": ["admins"], "verbs": ["*"]},
        {"name": "sre", "groups": ["sre"], "verbs": ["read", "exec", "approve"]}]}))
    colony = conftest.PolicyColony(tmp_path / "colony", args=("--policy", str(policy)))
    colony.add_token("alice", "sre")
    colony.start()
    try:
        run = coral_procs.coral("agents", "revoke", "web-1", env=colony.env_for("alice"))
        assert run.returncode == 1 and "no rule allows alice to admin" in run.stderr
        run = coral_procs.coral("colony", "join-token", "create", "--agent-id", "web-1",
                                env=colony.env_for("alice"))
        assert run.returncode == 1 and "no rule allows alice to admin" in run.stderr
    finally:
        colony.stop()


# -- rotation -----------------------------------------------------------------------------


def test_review_rotation_at_two_thirds_keeps_the_link(tmp_path):
    colony = conftest.PolicyColony(tmp_path / "colony", args=("--agent-cert-ttl", "12s"))
    colony.start()
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="rot-1").start()
    try:
        coral_procs.wait_registered(colony, ["rot-1"])
        first = x509.load_pem_x509_certificate(agent.cert_path.read_bytes())
        key_path = agent.state_dir / "rot-1.key"
        assert key_path.stat().st_mode & 0o777 == 0o600  # the key never leaves the agent
        assert (colony.data_dir / "identity.db").stat().st_mode & 0o777 == 0o600
        lifetime = (first.not_valid_after_utc - first.not_valid_before_utc).total_seconds()
        assert lifetime == 12
        coral_procs.wait_for(lambda: x509.load_pem_x509_certificate(
            agent.cert_path.read_bytes()).serial_number != first.serial_number,
            timeout=15, what="renewed certificate")
        renewed_after = time.time() - first.not_valid_before_utc.timestamp()
        assert 7 <= renewed_after <= 11  # at 2/3 of 12 s, with slack for a busy machine
        # Past the first certificate's end: the same link still carries operations.
        time.sleep(max(0.0, first.not_valid_after_utc.timestamp() - time.time()) + 1)
        run = _exec(colony, "--agent", "rot-1", "--", "echo", "after-rotation")
        assert run.returncode == 0, run.stderr
        assert _outputs(run) == [("rot-1", "after-rotation\n")]
        log = colony.log_path.read_text()
        assert log.count("agent rot-1 linked") == 1 and "rot-1 link closed" not in log
        renewed = [r for r in _audit_of(colony) if r.get("event") == "renewed"]
        assert renewed and renewed[0]["agent_id"] == "rot-1"
    finally:
        agent.stop()
        colony.stop()


def _audit_of(colony) -> list[dict]:
    with colony.client() as c:
        return c.audit(kind="identity")


# -- calls without (valid) agent metadata -------------------------------------------------


def test_review_calls_without_agent_metadata_are_refused_before_the_stream_is_read(trust,
                                                                                     tmp_path):
    chan, stub = agent_identity.bare_stub(trust)
    never = threading.Event()

    def silent():  # sends nothing: the old Link blocked reading a hello that never came
        never.wait(30)
        return
        yield

    with chan:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as link:
            list(stub.Link(silent(), timeout=20))
        assert time.monotonic() - started < 5
        assert link.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for method, request in ((stub.Register, mesh_pb2.RegisterRequest(agent_id="victim-1")),
                                (stub.Heartbeat, mesh_pb2.HeartbeatRequest(agent_id="victim-1")),
                                (stub.Renew, mesh_pb2.RenewRequest())):
            _, err = _call(method, request)
            assert err and err.code() == grpc.StatusCode.UNAUTHENTICATED
        never.set()
    # Valid credentials replayed, or moved to another method, are refused too.
    with agent_identity.MeshAgent(trust, tmp_path, "replay-1") as agent:
        held = agent.join()
        meta = credentials.proof_metadata(held, "/coral.mesh.v1.Mesh/Heartbeat")
        chan, stub = agent_identity.bare_stub(trust)
        with chan:
            first, _ = _call(stub.Heartbeat, mesh_pb2.HeartbeatRequest(), meta)
            _, replay = _call(stub.Heartbeat, mesh_pb2.HeartbeatRequest(), meta)
            moved = credentials.proof_metadata(held, "/coral.mesh.v1.Mesh/Heartbeat")
            _, wrong_method = _call(stub.Register, mesh_pb2.RegisterRequest(), moved)
            stale = credentials.proof_metadata(held, "/coral.mesh.v1.Mesh/Heartbeat",
                                               now=time.time() - 600)
            _, old = _call(stub.Heartbeat, mesh_pb2.HeartbeatRequest(), stale)
            tampered = dict(credentials.proof_metadata(held, "/coral.mesh.v1.Mesh/Heartbeat"))
            tampered[identity.PROOF_KEY] = base64.b64encode(b"\x30\x00").decode()
            _, bad_sig = _call(stub.Heartbeat, mesh_pb2.HeartbeatRequest(),
                               tuple(tampered.items()))
    assert first is not None  # not registered yet: ok=False, reregister, but authenticated
    assert replay and "already used" in replay.details()
    assert wrong_method and "does not verify" in wrong_method.details()
    assert old and "clock" in old.details()
    assert bad_sig and "does not verify" in bad_sig.details()
    assert "replay-1 linked" not in trust.log_path.read_text()


# -- the shared colony secret is gone -----------------------------------------------------


def test_review_shared_colony_secret_no_longer_exists_nor_is_accepted(trust, tmp_path):
    assert not (trust.data_dir / "colony.secret").exists()
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"agent": {"id": "old-style"}, "colony": {
        "address": trust.address, "caFile": str(trust.data_dir / "ca.crt"),
        "secretFile": str(trust.data_dir / "colony.secret")}}))
    run = coral_procs.coral("agent", "start", "--config", str(config), "--state-dir",
                            str(tmp_path / "state"), "--socket", str(tmp_path / "s.sock"),
                            timeout=30)
    assert run.returncode == 2
    assert "replaced by joinToken/joinTokenFile" in run.stderr
    run = coral_procs.coral("agent", "start", "--state-dir", str(tmp_path / "state"),
                            "--socket", str(tmp_path / "s.sock"),
                            env={"CORAL_COLONY_SECRET": "anything",
                                 "CORAL_COLONY_ADDRESS": trust.address}, timeout=30)
    assert run.returncode == 2 and "serviceAccountTokenFile" in run.stderr
    # The old protocol: agent id + colony secret in the body, no certificate.
    chan, stub = agent_identity.bare_stub(trust)
    with chan:
        _, err = _call(stub.Register, mesh_pb2.RegisterRequest(
            agent_id="victim-1", colony_id=trust.colony_id, colony_secret="anything"))
    assert err and err.code() == grpc.StatusCode.UNAUTHENTICATED
