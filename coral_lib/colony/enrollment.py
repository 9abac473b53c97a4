"""Agent enrollment on the colony: join tokens, certificate issuance, renewal, revocation.

State lives in `identity.db` in the data directory (0600): join tokens by SHA-256 hash only
(single use, redeemed in one UPDATE, expiring) and revocations. A revocation is a time:
every certificate of that agent id issued before it is refused from the next call on
(certificates carry their issue time as notBefore, to the second). Re-admission:

* a host agent needs a new join token, created by an admin after the revocation;
* a Kubernetes identity (node-*, pod-*) stays refused at Join until an admin creates a
  join token for that id (`coral colony join-token create --agent-id node-x`): the token
  cannot be redeemed by a host (the prefixes are reserved), it only lifts the revocation.

Every token creation, redemption and refusal is audited (refusals with bounded fields).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import math
import secrets
import sqlite3
import threading
import time
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from coral_lib import errors, identity
from coral_lib.colony import audit as audit_mod
from coral_lib.colony import pki, storage

DEFAULT_TTL = 24 * 3600.0
DEFAULT_TOKEN_TTL = 3600.0
MAX_TOKEN_TTL = 30 * 24 * 3600.0
DEFAULT_AGENT_SERVICE_ACCOUNT = "coral-system/coral-agent"
MAX_CSR = 4096
_FIELD = 200  # bound on untrusted strings in refusal records

_SCHEMA = """
CREATE TABLE IF NOT EXISTS join_tokens (
    hash TEXT PRIMARY KEY, agent_id TEXT NOT NULL, created_at REAL NOT NULL,
    expires_at REAL NOT NULL, created_by TEXT NOT NULL, used_at REAL
);
CREATE TABLE IF NOT EXISTS revoked (
    agent_id TEXT PRIMARY KEY, revoked_at REAL NOT NULL, revoked_by TEXT NOT NULL,
    lifted_at REAL
);
"""


class Refused(errors.CoralError):
    """A join or renewal refused; `code` is the gRPC status name to answer with."""

    def __init__(self, message: str, *, code: str = "PERMISSION_DENIED") -> None:
        super().__init__(message, code=code)


class Reviewer(Protocol):
    """Kubernetes TokenReview (coral_lib.colony.tokenreview.TokenReviewer): claims of a
    projected service account token, or an exception when the token is not valid."""

    def review(self, token: str): ...


@dataclasses.dataclass(frozen=True)
class Issued:
    who: identity.AgentIdentity
    certificate_pem: bytes
    not_after: float


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _bounded(text: str) -> str:
    text = str(text)
    return text if len(text) <= _FIELD else text[:_FIELD] + f"...({len(text)} chars)"


class _Budget:
    """At most `per_minute` records a minute; take() -> None when over budget, else how
    many were skipped since the last record."""

    def __init__(self, *, per_minute: int) -> None:
        self.per_minute, self._lock = per_minute, threading.Lock()
        self._window, self._used, self._skipped = 0, 0, 0

    def take(self) -> int | None:
        with self._lock:
            window = int(time.time() // 60)
            if window != self._window:
                self._window, self._used = window, 0
            if self._used >= self.per_minute:
                self._skipped += 1
                return None
            self._used += 1
            skipped, self._skipped = self._skipped, 0
            return skipped


def _csr_key(csr_der: bytes) -> ec.EllipticCurvePublicKey:
    """The public key of a valid self-signed P-256 CSR; Refused otherwise."""
    if len(csr_der) > MAX_CSR:
        raise Refused(f"CSR of {len(csr_der)} bytes: at most {MAX_CSR}", code="INVALID_ARGUMENT")
    try:
        csr = x509.load_der_x509_csr(csr_der)
    except ValueError:
        raise Refused("csr_der is not a DER certificate signing request",
                      code="INVALID_ARGUMENT") from None
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1" \
            or not csr.is_signature_valid:
        raise Refused("the CSR must be self-signed with an EC P-256 key", code="INVALID_ARGUMENT")
    return key


class Enrollment:
    """The colony's agent enrollment (see module docstring). Thread-safe."""

    def __init__(self, files: pki.ColonyFiles, *, colony_id: str, audit: audit_mod.AuditLog,
                 cert_ttl: float = DEFAULT_TTL, reviewer: Reviewer | None = None,
                 agent_service_account: str = DEFAULT_AGENT_SERVICE_ACCOUNT,
                 database: str = "") -> None:
        """database: a dsn.Dsn to keep tokens and revocations in PostgreSQL ('' = the
        data directory's identity file)."""
        self.colony_id, self.audit, self.reviewer = colony_id, audit, reviewer
        self.cert_ttl, self.agent_service_account = cert_ttl, agent_service_account
        self.ca_pem = files.ca_cert.read_bytes()
        self._ca_cert = x509.load_pem_x509_certificate(self.ca_pem)
        self._ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), None)
        self._lock = threading.Lock()
        self._refusals = _Budget(per_minute=60)
        # a file is made 0600 (with its side files) by pki.ensure
        self.path = database or str(files.identity_db)
        with self._sql("cannot open the agent identity store"):
            self._db = storage.connect(self.path, store="identity")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            self._revoked = {row[0]: row[1] for row in self._db.execute(
                "SELECT agent_id, revoked_at FROM revoked")}

    @contextlib.contextmanager
    def _sql(self, what: str):
        """SQLite failures (disk full, read-only) as Refused UNAVAILABLE naming the cause."""
        try:
            yield
        except sqlite3.Error as exc:
            raise Refused(storage.explain(what, self.path, exc), code="UNAVAILABLE") from None

    @property
    def ca_certificate(self) -> x509.Certificate:
        return self._ca_cert

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- join tokens -----------------------------------------------------------------------

    def create_token(self, agent_id: str, *, ttl: float = DEFAULT_TOKEN_TTL,
                     created_by: str) -> tuple[str, float]:
        """A new one-time token bound to `agent_id`: (token, expires_at). A host id, or a
        Kubernetes id whose revocation the token lifts."""
        if agent_id.startswith(identity.RESERVED_PREFIXES):
            if agent_id not in self._revoked:
                raise identity.IdentityError(
                    f"agent id {agent_id!r}: node- and pod- ids join with their service "
                    "account token; a join token for them only lifts a revocation, and "
                    f"{agent_id} is not revoked")
        else:
            identity.check_host_id(agent_id)
        if not 0 < ttl <= MAX_TOKEN_TTL:
            raise ValueError(f"ttl {ttl}: expected more than 0 and at most 30 days")
        token = "coral-join-" + secrets.token_urlsafe(32)
        now = time.time()
        with self._lock, self._sql("cannot store the join token"):
            self._db.execute("INSERT INTO join_tokens VALUES (?, ?, ?, ?, ?, NULL)",
                             (_hash(token), agent_id, now, now + ttl, created_by))
            if agent_id.startswith(identity.RESERVED_PREFIXES):
                self._db.execute("UPDATE revoked SET lifted_at = ? WHERE agent_id = ?",
                                 (now, agent_id))
        self.audit.append("identity", {"event": "join-token-created", "agent_id": agent_id,
                                       "expires_at": now + ttl, "by": created_by})
        return token, now + ttl

    def _redeem(self, token: str, hint: str) -> str:
        now = time.time()
        with self._lock, self._sql("cannot redeem the join token"):
            row = self._db.execute(
                "SELECT agent_id, expires_at, used_at FROM join_tokens WHERE hash = ?",
                (_hash(token),)).fetchone()
            if row is None:
                raise Refused("unknown join token", code="UNAUTHENTICATED")
            agent_id, expires_at, used_at = row
            if used_at is not None:
                raise Refused(f"join token for {agent_id} was already used", code="UNAUTHENTICATED")
            if expires_at <= now:
                raise Refused(f"join token for {agent_id} expired", code="UNAUTHENTICATED")
            if agent_id.startswith(identity.RESERVED_PREFIXES):
                raise Refused(f"join token for {agent_id} lifts a revocation; the agent joins "
                              "with its service account token")
            if hint and hint != agent_id:
                raise Refused(f"this join token is for agent {agent_id}, not {_bounded(hint)}: "
                              "set agent.id to match or create a token for this id")
            # One UPDATE decides who redeems: a concurrent second redemption changes 0 rows.
            done = self._db.execute(
                "UPDATE join_tokens SET used_at = ? WHERE hash = ? AND used_at IS NULL",
                (now, _hash(token))).rowcount
            if done != 1:
                raise Refused(f"join token for {agent_id} was already used", code="UNAUTHENTICATED")
            created_at = self._db.execute("SELECT created_at FROM join_tokens WHERE hash = ?",
                                          (_hash(token),)).fetchone()[0]
        if self._revoked.get(agent_id, 0.0) >= created_at:
            raise Refused(f"agent {agent_id} was revoked after this join token was created; "
                          "an admin must create a new one")
        return agent_id

    # -- join / renew ----------------------------------------------------------------------

    def join(self, *, join_token: str, service_account_token: str, csr_der: bytes,
             hint: str, peer: str) -> Issued:
        """Bootstrap: a certificate for the key in the CSR. Refused (audited) otherwise."""
        try:
            key = _csr_key(csr_der)  # before redeeming: a bad CSR must not burn the token
            who = self._bootstrap(join_token, service_account_token, hint)
            issued = self._issue(who, key)
        except (Refused, identity.IdentityError) as exc:
            suppressed = self._refusals.take()
            if suppressed is not None:  # Join is unauthenticated: refusals cannot fill the disk
                self.audit.refused(
                    requester=f"agent:{_bounded(hint) or '?'}", verb="join",
                    target=self.colony_id, command="", rule="agent-join",
                    reason=_bounded(f"{exc} (from {peer})") + (
                        f" [+{suppressed} more refused joins not recorded]" if suppressed else ""))
            raise exc if isinstance(exc, Refused) else Refused(str(exc)) from None
        self.audit.append("identity", {"event": "joined", "agent_id": who.agent_id,
                                       "agent_kind": who.kind, "peer": _bounded(peer),
                                       "not_after": issued.not_after})
        return issued

    def _bootstrap(self, join_token: str, sa_token: str, hint: str) -> identity.AgentIdentity:
        if bool(join_token) == bool(sa_token):
            raise Refused("send exactly one of join_token and service_account_token",
                          code="INVALID_ARGUMENT")
        if join_token:
            return identity.host_identity(self._redeem(join_token, hint))
        if self.reviewer is None:
            raise Refused("Kubernetes bootstrap is disabled on this colony (no TokenReview "
                          "configured): join with a join token", code="FAILED_PRECONDITION")
        try:
            claims = self.reviewer.review(sa_token)
        except Exception as exc:  # noqa: BLE001 - TokenRejected or an API error: refused
            raise Refused(f"service account token rejected: {exc}",
                          code="UNAUTHENTICATED") from None
        account = f"{claims.namespace}/{claims.service_account}"
        if account == self.agent_service_account:
            who = identity.node_identity(claims.node)
        else:
            who = identity.pod_identity(claims.namespace, claims.pod, claims.node)
        revoked = self._db_revocation(who.agent_id)
        if revoked is not None and revoked[1] is None:
            raise Refused(f"agent {who.agent_id} is revoked; an admin lifts it with "
                          f"`coral colony join-token create --agent-id {who.agent_id}`")
        return who

    def _db_revocation(self, agent_id: str) -> tuple[float, float | None] | None:
        with self._lock, self._sql("cannot read revocations"):
            return self._db.execute("SELECT revoked_at, lifted_at FROM revoked WHERE agent_id = ?",
                                    (agent_id,)).fetchone()

    def renew(self, who: identity.AgentIdentity, csr_der: bytes) -> Issued:
        """A fresh certificate for an agent whose current one was just verified."""
        issued = self._issue(who, _csr_key(csr_der))
        self.audit.append("identity", {"event": "renewed", "agent_id": who.agent_id,
                                       "not_after": issued.not_after})
        return issued

    def _issue(self, who: identity.AgentIdentity, key: ec.EllipticCurvePublicKey) -> Issued:
        # notBefore is the issue time (whole seconds, after any revocation of this id), so a
        # revocation refuses exactly the certificates issued before it.
        start = max(math.floor(time.time()), math.ceil(self._revoked.get(who.agent_id, 0.0)))
        not_before = datetime.datetime.fromtimestamp(start, datetime.UTC)
        not_after = not_before + datetime.timedelta(seconds=self.cert_ttl)
        sans: list[x509.GeneralName] = [
            x509.UniformResourceIdentifier(identity.spiffe_uri(self.colony_id, who))]
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([
                       x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Coral agents"),
                       x509.NameAttribute(NameOID.COMMON_NAME, who.agent_id[:64])]))
                   .issuer_name(self._ca_cert.subject).public_key(key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_after)
                   .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True))
        cert = builder.sign(self._ca_key, hashes.SHA256())
        return Issued(who=who, certificate_pem=cert.public_bytes(serialization.Encoding.PEM),
                      not_after=not_after.timestamp())

    # -- revocation ------------------------------------------------------------------------

    def revoke(self, agent_id: str, *, by: str) -> float:
        """Refuse every certificate of `agent_id` issued until now; returns the time."""
        if not agent_id or len(agent_id) > identity.MAX_ID:
            raise identity.IdentityError(f"agent id {_bounded(agent_id)!r}: expected 1-"
                                         f"{identity.MAX_ID} characters")
        now = time.time()
        with self._lock, self._sql("cannot store the revocation"):
            self._db.execute(
                "INSERT INTO revoked VALUES (?, ?, ?, NULL) ON CONFLICT(agent_id) DO UPDATE "
                "SET revoked_at = excluded.revoked_at, revoked_by = excluded.revoked_by, "
                "lifted_at = NULL", (agent_id, now, by))
            self._revoked[agent_id] = now
        self.audit.append("identity", {"event": "revoked", "agent_id": agent_id, "by": by})
        return now

    def refresh_revoked(self) -> set[str]:
        """Reload revocations written by other replicas; return the agents newly revoked."""
        with self._lock, self._sql("cannot read revocations"):
            rows = dict(self._db.execute("SELECT agent_id, revoked_at FROM revoked").fetchall())
            fresh = {a for a, at in rows.items() if self._revoked.get(a) != at}
            self._revoked = rows
        return fresh

    def revoked_at(self, agent_id: str) -> float | None:
        return self._revoked.get(agent_id)
