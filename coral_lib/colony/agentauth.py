"""Agent authentication on the colony: verify the per-call proof before any handler runs.

`AgentAuth` is a gRPC server interceptor on the Mesh service (Join excepted). It reads only
call metadata (see coral_lib.identity): the certificate must chain to the colony CA, be
within its validity window, carry clientAuth and a URI SAN of this colony, and not be
revoked; the timestamp must be within SKEW seconds; the nonce unseen within the window;
the signature over (method, ts, nonce) valid for the certificate's key. A refused call
gets a handler that aborts without deserializing or reading the request stream.

The handler gets the verified identity with `AgentAuth.identity(context)` (looked up by
the call's nonce, which is unique per call).
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import datetime
import hashlib
import logging
import threading
import time
from collections.abc import Callable

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from coral_lib import identity

log = logging.getLogger(__name__)

SKEW = 120.0
MAX_NONCES = 200_000  # ~800 calls/s over the 240 s window; the oldest go first beyond it
_MAX_CERT_B64, _MAX_SMALL = 8192, 256
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())  # the proof's algorithm (a stateless descriptor)


class AuthError(Exception):
    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNAUTHENTICATED):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class _Parsed:
    cert: x509.Certificate
    who: identity.AgentIdentity
    not_before: float
    not_after: float


class Verifier:
    """Checks one call's agent metadata (pure apart from the clock and the nonce cache)."""

    def __init__(self, *, ca_cert: x509.Certificate, colony_id: str,
                 revoked_at: Callable[[str], float | None],
                 clock: Callable[[], float] = time.time) -> None:
        self.ca_cert, self.colony_id, self.revoked_at, self.clock = (
            ca_cert, colony_id, revoked_at, clock)
        self._lock = threading.Lock()
        # nonce -> (forget at, who, certificate notAfter)
        self._nonces: collections.OrderedDict[
            str, tuple[float, identity.AgentIdentity, float]] = collections.OrderedDict()
        self._certs: collections.OrderedDict[bytes, _Parsed] = collections.OrderedDict()

    def verify(self, method: str, metadata: dict[str, str]) -> identity.AgentIdentity:
        values = [metadata.get(k, "") for k in (identity.CERT_KEY, identity.TS_KEY,
                                                 identity.NONCE_KEY, identity.PROOF_KEY)]
        if not all(values):
            raise AuthError("no agent credentials: the call must carry coral-agent-cert, "
                            "-ts, -nonce and -proof metadata (an agent without a certificate "
                            "joins first; coral 0.1 agents, which sent a shared colony "
                            "secret, must be upgraded and joined with a join token)")
        cert_b64, ts, nonce, proof_b64 = values
        if len(cert_b64) > _MAX_CERT_B64 or max(map(len, (ts, nonce, proof_b64))) > _MAX_SMALL:
            raise AuthError("agent credentials too large")
        now = self.clock()
        try:
            when = float(ts)
        except ValueError:
            raise AuthError("coral-agent-ts is not a number") from None
        if abs(now - when) > SKEW:
            raise AuthError(f"coral-agent-ts is {now - when:+.0f}s off the colony's clock "
                            f"(at most {SKEW:.0f}s): check the agent's clock")
        try:
            der, proof = base64.b64decode(cert_b64, validate=True), base64.b64decode(
                proof_b64, validate=True)
        except (binascii.Error, ValueError):
            raise AuthError("agent credentials are not base64") from None
        parsed = self._parse(der)
        if not parsed.not_before - 1 <= now < parsed.not_after:
            raise AuthError(f"certificate of {parsed.who.agent_id} is expired or not yet valid "
                            "(a host agent needs a new join token)")
        revoked = self.revoked_at(parsed.who.agent_id)
        if revoked is not None and parsed.not_before < revoked:
            raise AuthError(f"agent {parsed.who.agent_id} is revoked",
                            grpc.StatusCode.PERMISSION_DENIED)
        key = parsed.cert.public_key()
        try:
            key.verify(proof, identity.proof_payload(method, ts, nonce),  # type: ignore[union-attr]
                       _ECDSA_SHA256)
        except (InvalidSignature, TypeError, ValueError):
            raise AuthError("coral-agent-proof does not verify with the certificate's key") \
                from None
        self._use_nonce(nonce, parsed, now)
        return parsed.who

    def _parse(self, der: bytes) -> _Parsed:
        digest = hashlib.sha256(der).digest()
        with self._lock:
            hit = self._certs.get(digest)
        if hit is not None:
            return hit
        try:
            cert = x509.load_der_x509_certificate(der)
            cert.verify_directly_issued_by(self.ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            raise AuthError("certificate is not issued by this colony's CA") from None
        try:
            usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            uris = cert.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value.get_values_for_type(
                    x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            raise AuthError("certificate is not an agent certificate (no URI SAN / EKU)") \
                from None
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usage or len(uris) != 1:
            raise AuthError("certificate is not an agent certificate (clientAuth, one URI SAN)")
        if not isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
            raise AuthError("certificate key is not EC")
        try:
            who = identity.parse_spiffe(uris[0], colony_id=self.colony_id)
        except identity.IdentityError as exc:
            raise AuthError(str(exc)) from None
        parsed = _Parsed(cert, who, _ts(cert.not_valid_before_utc), _ts(cert.not_valid_after_utc))
        with self._lock:
            self._certs[digest] = parsed
            while len(self._certs) > 4096:
                self._certs.popitem(last=False)
        return parsed

    def _use_nonce(self, nonce: str, parsed: _Parsed, now: float) -> None:
        with self._lock:
            while self._nonces:
                oldest, (expires, _, _) = next(iter(self._nonces.items()))
                if expires > now and len(self._nonces) < MAX_NONCES:
                    break
                del self._nonces[oldest]
            if nonce in self._nonces:
                raise AuthError("coral-agent-nonce was already used (replayed call)")
            self._nonces[nonce] = (now + 2 * SKEW, parsed.who, parsed.not_after)

    def identity_of(self, nonce: str) -> tuple[identity.AgentIdentity, float] | None:
        """(who, certificate notAfter) of a call verified within the window."""
        with self._lock:
            hit = self._nonces.get(nonce)
        return (hit[1], hit[2]) if hit else None


def _ts(when: datetime.datetime) -> float:
    return when.timestamp()


class AgentAuth(grpc.ServerInterceptor):
    """Verifies agent metadata on every call of `service` except `open_methods`."""

    def __init__(self, verifier: Verifier, *, service: str = "/coral.mesh.v1.Mesh/",
                 open_methods: tuple[str, ...] = ("/coral.mesh.v1.Mesh/Join",),
                 on_refused: Callable[[str, str, str], None] | None = None) -> None:
        """on_refused(peer, method, reason): told of every refused call (e.g. to throttle
        and audit failed logins per peer); it runs before the call is answered."""
        self.verifier, self.service, self.open_methods = verifier, service, open_methods
        self.on_refused = on_refused

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if not method.startswith(self.service) or method in self.open_methods:
            return continuation(handler_call_details)
        metadata = {k: v for k, v in handler_call_details.invocation_metadata or ()
                    if isinstance(v, str)}
        try:
            self.verifier.verify(method, metadata)
        except AuthError as exc:
            log.warning("agent call %s refused: %s", method, exc)
            return _refusal(continuation(handler_call_details), exc, method, self.on_refused)
        return continuation(handler_call_details)

    def identity(self, context: grpc.ServicerContext) -> identity.AgentIdentity:
        """The verified caller of this call; aborts UNAUTHENTICATED when there is none."""
        return self.caller(context)[0]

    def caller(self, context: grpc.ServicerContext) -> tuple[identity.AgentIdentity, float]:
        """(who, when its certificate expires) for this call; aborts when unverified."""
        nonce = dict(context.invocation_metadata() or ()).get(identity.NONCE_KEY, "")
        hit = self.verifier.identity_of(nonce) if nonce else None
        if hit is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no verified agent identity")
        return hit


def _refusal(handler, exc: AuthError, method: str, on_refused):
    """A handler of the same shape that aborts without deserializing or reading requests."""
    def abort(_request, context):
        if on_refused is not None:
            try:
                on_refused(context.peer(), method, str(exc))
            except Exception:  # noqa: BLE001 - a failing hook must not answer the call OK
                log.exception("agent auth refusal hook failed")
        context.abort(exc.code, str(exc))
    if handler is None:
        return None
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)
