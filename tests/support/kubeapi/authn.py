"""Service account tokens as kube-apiserver has them: TokenRequest, TokenReview, bearer auth.

Tokens are JWTs signed by the fixture's own key (ES256; kube-apiserver signs RS256 or ES256
depending on its key). Claims follow pkg/serviceaccount/claims.go: iss, sub, aud, exp, iat,
nbf, jti and `kubernetes.io` = {namespace, serviceaccount{name,uid}, pod{name,uid},
node{name,uid}} for pod-bound tokens. Validation (on every bearer request and in
TokenReview): signature, issuer, expiry, audience, the service account still exists with
the same uid, and a bound pod still exists with the same uid and is not being deleted.

TokenRequest rules (pkg/registry/core/serviceaccount/storage/token.go): expirationSeconds
defaults to 3600 and may not be under 600 (10 minutes) or over 2^32; audiences default to
the API server's; boundObjectRef may name a Pod (v1) in the same namespace, which must run
as that service account, and whose uid must match when given (409 otherwise).

FIXTURE BEHAVIOUR, not Kubernetes: the fixture's clock can be moved forward
(`TokenAuthority.advance(seconds)`) so tests can see a token expire without waiting 10
minutes; nothing else about time is faked. No legacy (Secret-based) tokens, no
`warnafter`/extended expiry, no Secret- or Node-bound tokens.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import threading
import time
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from tests.support.kubeapi import errors

ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCES = (ISSUER,)  # what a bearer token must be for, and TokenReview's default
MIN_EXPIRATION = 600
MAX_EXPIRATION = 2 ** 32
DEFAULT_EXPIRATION = 3600
INVALIDATED = "service account token has been invalidated"


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]
    uid: str = ""
    extra: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return "system:masters" in self.groups


ADMIN = User("kubernetes-admin", ("system:masters", "system:authenticated"))


class TokenInvalid(Exception):
    """A token that does not authenticate; the message is what TokenReview's status.error
    says."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


class TokenAuthority:
    """Issues and validates service account tokens against the store's current objects."""

    def __init__(self, store):
        self.store = store
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._kid = uuid.uuid4().hex
        self._offset = 0.0
        self._lock = threading.Lock()

    # ---- the fixture's clock ------------------------------------------------------------
    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """FIXTURE: move the clock tokens are checked against forward by `seconds`."""
        with self._lock:
            self._offset += seconds

    # ---- JWT ----------------------------------------------------------------------------
    def _sign(self, claims: dict) -> str:
        header = {"alg": "ES256", "kid": self._kid}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(),
                                                   ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _verified_claims(self, token: str) -> dict:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenInvalid("invalid bearer token")
        try:
            header = json.loads(_unb64(parts[0]))
            sig = _unb64(parts[2])
            if header.get("alg") != "ES256" or len(sig) != 64:
                raise TokenInvalid("invalid bearer token")
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                       int.from_bytes(sig[32:], "big"))
            self._key.public_key().verify(der, f"{parts[0]}.{parts[1]}".encode(),
                                          ec.ECDSA(hashes.SHA256()))
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, TypeError, InvalidSignature, AttributeError):
            raise TokenInvalid("invalid bearer token") from None
        if not isinstance(claims, dict) or claims.get("iss") != ISSUER:
            raise TokenInvalid("invalid bearer token")
        return claims

    # ---- TokenRequest -------------------------------------------------------------------
    def request(self, namespace: str, sa_name: str, body: object) -> dict:
        """POST .../serviceaccounts/<name>/token: the TokenRequest with status.token."""
        if not isinstance(body, dict):
            raise errors.bad_request("TokenRequest body must be a JSON object")
        spec = body.get("spec") or {}
        if not isinstance(spec, dict):
            raise errors.bad_request("TokenRequest spec must be an object")
        sa = self.store.get("serviceaccounts", sa_name, namespace=namespace)
        expiration = spec.get("expirationSeconds")
        expiration = DEFAULT_EXPIRATION if expiration in (None, 0) else expiration
        if not isinstance(expiration, int) or isinstance(expiration, bool):
            raise errors.bad_request("spec.expirationSeconds must be an integer")
        if expiration < MIN_EXPIRATION:
            raise errors.invalid("TokenRequest", sa_name, "spec.expirationSeconds: Invalid "
                                 f"value: {expiration}: may not specify a duration less than "
                                 "10 minutes")
        if expiration > MAX_EXPIRATION:
            raise errors.invalid("TokenRequest", sa_name, "spec.expirationSeconds: Invalid "
                                 f"value: {expiration}: may not specify a duration larger "
                                 "than 2^32 seconds")
        audiences = spec.get("audiences") or list(API_AUDIENCES)
        if not isinstance(audiences, list) or not all(isinstance(a, str) and a
                                                      for a in audiences):
            raise errors.bad_request("spec.audiences must be a list of non-empty strings")
        now = int(self.now())
        private = {"namespace": namespace,
                   "serviceaccount": {"name": sa_name, "uid": sa["metadata"]["uid"]}}
        ref = spec.get("boundObjectRef")
        if ref:
            private.update(self._bind(namespace, sa_name, ref))
        claims = {"aud": audiences, "exp": now + expiration, "iat": now, "nbf": now,
                  "iss": ISSUER, "jti": str(uuid.uuid4()),
                  "sub": f"system:serviceaccount:{namespace}:{sa_name}",
                  "kubernetes.io": private}
        return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": sa_name, "namespace": namespace,
                             "creationTimestamp": _rfc3339(now)},
                "spec": {"audiences": audiences, "expirationSeconds": expiration,
                         "boundObjectRef": ref or None},
                "status": {"token": self._sign(claims),
                           "expirationTimestamp": _rfc3339(now + expiration)}}

    def _bind(self, namespace: str, sa_name: str, ref: object) -> dict:
        if not isinstance(ref, dict):
            raise errors.bad_request("spec.boundObjectRef must be an object")
        kind, name = ref.get("kind"), ref.get("name")
        if kind != "Pod" or ref.get("apiVersion", "v1") != "v1":
            raise errors.bad_request(f"cannot bind token to object of type {kind!r} "
                                     f"({ref.get('apiVersion')!r}): this fixture binds to "
                                     "v1 Pods only")
        if not isinstance(name, str) or not name:
            raise errors.bad_request("spec.boundObjectRef.name is required")
        pod = self.store.get("pods", name, namespace=namespace)
        meta, spec = pod["metadata"], pod.get("spec") or {}
        if ref.get("uid") and ref["uid"] != meta["uid"]:
            raise errors.ApiError(409, f"the UID in the bound object reference "
                                  f"({ref['uid']}) does not match the UID in record. The "
                                  "object might have been deleted and then recreated",
                                  reason="Conflict")
        if (spec.get("serviceAccountName") or "default") != sa_name:
            raise errors.bad_request(f"cannot bind token for serviceaccount {sa_name!r} to "
                                     "pod running with different serviceaccount name.")
        private = {"pod": {"name": name, "uid": meta["uid"]}}
        node_name = spec.get("nodeName")
        if node_name:
            try:
                node = self.store.get("nodes", node_name)
                private["node"] = {"name": node_name, "uid": node["metadata"]["uid"]}
            except errors.ApiError:
                pass  # as kube-apiserver: a pod's node that is gone is simply not named
        return private

    # ---- validation (bearer auth and TokenReview) ---------------------------------------
    def authenticate(self, token: str, audiences: tuple[str, ...] | list[str] = API_AUDIENCES
                     ) -> tuple[User, list[str]]:
        """(user, audiences the token is good for) or TokenInvalid."""
        claims = self._verified_claims(token)
        now = self.now()
        if not isinstance(claims.get("exp"), int) or now >= claims["exp"]:
            raise TokenInvalid("service account token has expired")
        if isinstance(claims.get("nbf"), int) and now < claims["nbf"] - 60:
            raise TokenInvalid("service account token is not valid yet")
        token_aud = claims.get("aud")
        token_aud = [token_aud] if isinstance(token_aud, str) else list(token_aud or [])
        matched = [a for a in audiences if a in token_aud]
        if not matched:
            raise TokenInvalid(f"token audiences {json.dumps(token_aud)} is invalid for the "
                               f"target audiences {json.dumps(list(audiences))}")
        private = claims.get("kubernetes.io") or {}
        ns = private.get("namespace", "")
        sa_ref = private.get("serviceaccount") or {}
        try:
            sa = self.store.get("serviceaccounts", sa_ref.get("name", ""), namespace=ns)
        except errors.ApiError:
            raise TokenInvalid(INVALIDATED) from None
        if sa["metadata"]["uid"] != sa_ref.get("uid"):
            raise TokenInvalid(INVALIDATED)
        extra: dict[str, list[str]] = {
            "authentication.kubernetes.io/credential-id": [f"JTI={claims.get('jti', '')}"]}
        pod_ref = private.get("pod")
        if pod_ref:
            try:
                pod = self.store.get("pods", pod_ref.get("name", ""), namespace=ns)
            except errors.ApiError:
                raise TokenInvalid(INVALIDATED) from None
            meta = pod["metadata"]
            if meta["uid"] != pod_ref.get("uid") or meta.get("deletionTimestamp"):
                raise TokenInvalid(INVALIDATED)
            extra["authentication.kubernetes.io/pod-name"] = [pod_ref["name"]]
            extra["authentication.kubernetes.io/pod-uid"] = [pod_ref["uid"]]
        node_ref = private.get("node")
        if node_ref:
            extra["authentication.kubernetes.io/node-name"] = [node_ref["name"]]
            extra["authentication.kubernetes.io/node-uid"] = [node_ref["uid"]]
        user = User(f"system:serviceaccount:{ns}:{sa_ref['name']}",
                    ("system:serviceaccounts", f"system:serviceaccounts:{ns}",
                     "system:authenticated"), uid=sa_ref["uid"], extra=extra)
        return user, matched

    def review(self, body: object) -> dict:
        """POST tokenreviews: the TokenReview with its status (always 201, as upstream)."""
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
            raise errors.bad_request("TokenReview body must be an object with a spec")
        spec = body["spec"]
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise errors.invalid("TokenReview", "", "spec.token: Required value")
        audiences = spec.get("audiences") or list(API_AUDIENCES)
        out = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"creationTimestamp": None}, "spec": spec}
        try:
            user, matched = self.authenticate(token, audiences)
        except TokenInvalid as exc:
            out["status"] = {"user": {}, "error": f"[invalid bearer token, {exc}]"}
            return out
        out["status"] = {"authenticated": True, "audiences": matched,
                         "user": {"username": user.name, "uid": user.uid,
                                  "groups": list(user.groups), "extra": user.extra}}
        return out


# ---- kubectl sends TokenRequest as protobuf ------------------------------------------------
# `kubectl create token` posts application/vnd.kubernetes.protobuf: the magic "k8s\0", a
# runtime.Unknown {typeMeta=1, raw=2} whose raw bytes are the TokenRequest message
# (generated.proto: metadata=1, spec=2; TokenRequestSpec audiences=1, boundObjectRef=3,
# expirationSeconds=4; BoundObjectReference kind=1, apiVersion=2, name=3, uid=4).

def _fields(data: bytes) -> list[tuple[int, object]]:
    """(field number, int or bytes) for each field of one protobuf message."""
    out, i = [], 0

    def varint() -> int:
        nonlocal i
        value = shift = 0
        while True:
            if i >= len(data) or shift > 63:
                raise ValueError("truncated varint")
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, varint()))
        elif wire == 2:
            size = varint()
            if i + size > len(data):
                raise ValueError("truncated field")
            out.append((number, data[i:i + size]))
            i += size
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def token_request_from_protobuf(body: bytes) -> dict:
    """The TokenRequest dict of a protobuf body; errors.bad_request when it is not one."""
    try:
        if not body.startswith(b"k8s\x00"):
            raise ValueError("no k8s protobuf magic")
        raw = next(v for n, v in _fields(body[4:]) if n == 2)
        spec_bytes = next((v for n, v in _fields(raw) if n == 2), b"")
        spec: dict = {"audiences": []}
        for number, value in _fields(spec_bytes):
            if number == 1:
                spec["audiences"].append(value.decode())
            elif number == 4:
                spec["expirationSeconds"] = value
            elif number == 3:
                names = {1: "kind", 2: "apiVersion", 3: "name", 4: "uid"}
                spec["boundObjectRef"] = {names[n]: v.decode() for n, v in _fields(value)
                                          if n in names}
    except (ValueError, StopIteration, UnicodeDecodeError, AttributeError) as exc:
        raise errors.bad_request(f"the protobuf body is not a TokenRequest: {exc}") from None
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
