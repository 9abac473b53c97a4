"""The agent's own identity: its key and colony-issued certificate, the per-call proof, and
joining / renewal.

The EC P-256 key is generated here and never leaves the agent (the colony signs a CSR).
Key and certificate are kept 0600 in the state directory, so a restarted agent needs no
new join token. Every Mesh call carries the proof described in coral_lib.identity, added
by a gRPC call-credentials plugin that reads the current certificate, so a renewal takes
effect on the next call without touching an open link.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import pathlib
import secrets
import threading
import time

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from coral_lib import files, identity, logs
from coral_lib._proto.coral.mesh.v1 import mesh_pb2, mesh_pb2_grpc

log = logging.getLogger(__name__)

JOIN_METHOD = "/coral.mesh.v1.Mesh/Join"


@dataclasses.dataclass(frozen=True)
class Held:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    agent_id: str

    @property
    def not_before(self) -> float:
        return self.cert.not_valid_before_utc.timestamp()

    @property
    def not_after(self) -> float:
        return self.cert.not_valid_after_utc.timestamp()

    def usable(self) -> bool:
        """Valid long enough to renew with (renew_forever renews at once when overdue)."""
        return self.not_after - time.time() > 5

    def renew_at(self) -> float:
        """Two thirds into the certificate's life."""
        return self.not_before + (self.not_after - self.not_before) * 2 / 3


class Holder:
    """The current key + certificate, on disk and in memory; swapped atomically on renewal."""

    def __init__(self, state_dir: pathlib.Path, name: str, *, ca_pem: bytes) -> None:
        self.key_path = state_dir / f"{name}.key"
        self.cert_path = state_dir / f"{name}.crt"
        self.ca = x509.load_pem_x509_certificate(ca_pem)
        self._lock = threading.Lock()
        self._held: Held | None = None

    @property
    def held(self) -> Held | None:
        with self._lock:
            return self._held

    def load(self) -> Held | None:
        """The stored identity when it is still valid and issued by the configured CA."""
        try:
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
            cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            cert.verify_directly_issued_by(self.ca)
        except (OSError, ValueError, TypeError, InvalidSignature):
            return None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.public_key() != key.public_key():
            return None
        held = Held(key, cert, cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        if not held.usable():
            return None
        with self._lock:
            self._held = held
        return held

    def clear(self) -> None:
        with self._lock:
            self._held = None

    def discard(self) -> None:
        """Forget the identity on disk too (it was revoked): only a new join helps."""
        self.clear()
        for path in (self.key_path, self.cert_path):
            path.unlink(missing_ok=True)

    def store(self, key: ec.EllipticCurvePrivateKey, cert_pem: bytes, agent_id: str) -> Held:
        cert = x509.load_pem_x509_certificate(cert_pem)
        if cert.public_key() != key.public_key():
            raise ValueError("the colony returned a certificate for another key")
        self.key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(self.key_path, key.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
        _write(self.cert_path, cert_pem)
        held = Held(key, cert, agent_id)
        with self._lock:
            self._held = held
        return held


def _write(path: pathlib.Path, data: bytes) -> None:
    files.write_atomic(path, data, mode=0o600)


def new_key_and_csr(name: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64] or "agent")]))
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.DER)


def proof_metadata(held: Held, method: str, *, now: float | None = None,
                   nonce: str | None = None) -> tuple[tuple[str, str], ...]:
    """The four coral-agent-* metadata entries proving `held` for one call to `method`."""
    ts = str(int(now if now is not None else time.time()))
    nonce = nonce or secrets.token_urlsafe(18)
    proof = held.key.sign(identity.proof_payload(method, ts, nonce), ec.ECDSA(hashes.SHA256()))
    return ((identity.CERT_KEY, base64.b64encode(
        held.cert.public_bytes(serialization.Encoding.DER)).decode()),
        (identity.TS_KEY, ts), (identity.NONCE_KEY, nonce),
        (identity.PROOF_KEY, base64.b64encode(proof).decode()))


class CallProof(grpc.AuthMetadataPlugin):
    """Adds the proof to every call but Join, from whatever the holder holds now."""

    def __init__(self, holder: Holder) -> None:
        self.holder = holder

    def __call__(self, context, callback) -> None:
        method = f"/{context.service_url.rsplit('/', 1)[-1]}/{context.method_name}"
        held = self.holder.held
        if method == JOIN_METHOD or held is None:
            callback((), None)
            return
        try:
            callback(proof_metadata(held, method), None)
        except Exception as exc:  # noqa: BLE001 - gRPC wants the error handed back
            callback((), exc)


def channel(address: str, *, ca_pem: bytes, holder: Holder) -> grpc.Channel:
    creds = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=ca_pem),
        grpc.metadata_call_credentials(CallProof(holder), name="coral-agent"))
    return grpc.secure_channel(address, creds, options=[
        ("grpc.keepalive_time_ms", 20000), ("grpc.keepalive_permit_without_calls", 1),
        # accept what the colony may send (its own limit, colony/server.py MESSAGE_LIMITS)
        ("grpc.max_receive_message_length", 256 << 20),
    ])


# Answers that a join credential will get again however often it is sent (used, expired,
# unknown, revoked); UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED are worth a retry.
_FINAL_JOIN_CODES = frozenset({
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND})
RETRY_REFUSED_CREDENTIAL = 300.0  # seconds before the same refused credential is sent again


class CredentialRefused(Exception):
    """The colony refused this join credential; it is not sent again until it changes (a
    new token file, a rotated service account token) or RETRY_REFUSED_CREDENTIAL passed.
    Re-sending it would only count as failed logins against the agent's address."""


class Enroller:
    """Joins when the agent holds no valid certificate, renews at 2/3 of its life."""

    def __init__(self, stub: mesh_pb2_grpc.MeshStub, holder: Holder, *, name: str,
                 join_token, service_account_token) -> None:
        """join_token / service_account_token: callables returning the current value ('')."""
        self.stub, self.holder, self.name = stub, holder, name
        self._join_token, self._sa_token = join_token, service_account_token
        self._refused: tuple[str, float] | None = None  # (credential digest, when)

    def ensure(self, *, timeout: float = 15.0) -> Held:
        """The stored identity, or a new one from Join. Raises grpc.RpcError or
        identity.IdentityError (no credential to join with)."""
        held = self.holder.held or self.holder.load()
        if held is not None and held.usable():
            return held
        sa_token = self._sa_token()
        join_token = "" if sa_token else self._join_token()
        logs.known(sa_token, join_token)  # never in a log line, whatever a message quotes
        if not (sa_token or join_token):
            raise identity.IdentityError(
                f"no valid certificate in {self.holder.cert_path.parent} and no join "
                "credential: set colony.joinToken/joinTokenFile (a new one from `coral colony "
                "join-token create`) or colony.serviceAccountTokenFile")
        digest = hashlib.sha256((sa_token or join_token).encode()).hexdigest()
        if self._refused and self._refused[0] == digest and \
                time.monotonic() - self._refused[1] < RETRY_REFUSED_CREDENTIAL:
            raise CredentialRefused("the colony refused this join credential; waiting for a "
                                    "new one (join token file or service account token)")
        key, csr = new_key_and_csr(self.name)
        try:
            reply = self.stub.Join(mesh_pb2.JoinRequest(
                join_token=join_token, service_account_token=sa_token, csr_der=csr,
                agent_id_hint="" if sa_token else self.name), timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() in _FINAL_JOIN_CODES:
                self._refused = (digest, time.monotonic())
            raise
        self._refused = None
        held = self.holder.store(key, reply.certificate_pem.encode(), reply.agent_id)
        log.info("joined the colony as %s (certificate valid until %s)", held.agent_id,
                 held.cert.not_valid_after_utc.isoformat())
        return held

    def renew(self, *, timeout: float = 15.0) -> Held:
        held = self.holder.held
        assert held is not None, "renew() before ensure()"
        key, csr = new_key_and_csr(held.agent_id)
        reply = self.stub.Renew(mesh_pb2.RenewRequest(csr_der=csr), timeout=timeout)
        new = self.holder.store(key, reply.certificate_pem.encode(), held.agent_id)
        log.info("certificate renewed (valid until %s)", new.cert.not_valid_after_utc.isoformat())
        return new

    def renew_forever(self, stop: threading.Event) -> None:
        """Renew at 2/3 of each certificate's life; retry sooner on failure; re-join (with
        a service account token) when the certificate ran out anyway."""
        while not stop.is_set():
            held = self.holder.held
            if held is None:
                return
            if stop.wait(max(0.0, held.renew_at() - time.time())):
                return
            try:
                if held.not_after <= time.time():
                    self.holder.clear()  # expired: only a new join helps
                    self.ensure()
                else:
                    self.renew()
            except (grpc.RpcError, identity.IdentityError, ValueError) as exc:
                left = held.not_after - time.time()
                log.warning("certificate renewal failed (%s); %.0fs left", _why(exc), left)
                stop.wait(min(30.0, max(1.0, left / 10)))


def _why(exc: Exception) -> str:
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "details"):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)
