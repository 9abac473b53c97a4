"""Who a Kubernetes agent is: its projected service account token, checked by TokenReview.

A DaemonSet agent or sidecar presents the token kubelet projects into its pod (audience
`coral`, bound to the pod, at most an hour). The colony does not trust what the token
says: it asks the cluster's API server (POST authentication.k8s.io/v1 tokenreviews), which
checks signature, expiry, audience and that the bound pod still exists with the same uid,
and answers with the pod and node the token is bound to. Only that answer becomes
PodClaims; everything else is TokenRejected.

The colony's own Kubernetes identity needs `create` on `tokenreviews` in group
`authentication.k8s.io` (the ClusterRole rendered by coral_lib.manifests.colony); a
missing permission or an unreachable API server is ReviewUnavailable, a TokenRejected
subclass whose message says what to fix. No message carries token text.
"""

from __future__ import annotations

import dataclasses
import re

from coral_lib.discovery import kubeclient

DEFAULT_AUDIENCE = "coral"
MAX_TOKEN_BYTES = 16 * 1024  # real projected tokens are ~1 KiB; bounds the POST we make
REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
_EXTRA = "authentication.kubernetes.io/"
_SA_PREFIX = "system:serviceaccount:"
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~+/=-]+$")  # JWT (base64url) and opaque tokens
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_UID = re.compile(r"^[0-9a-fA-F-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class PodClaims:
    """What the API server vouches for: the pod the token is bound to and its node."""

    namespace: str
    pod: str
    pod_uid: str
    node: str
    service_account: str


class TokenRejected(Exception):
    """The token does not prove a pod identity; the message says why (never the token)."""


class ReviewUnavailable(TokenRejected):
    """The colony could not get an answer (no RBAC permission, API server unreachable or
    refusing the colony's credentials): nothing is known about the token."""


class TokenReviewer:
    """Reviews agent tokens against one cluster's API server.

    kubeconfig: a kubeconfig file (its current context, or `context`); None means the
    colony runs in the cluster and uses its own pod's service account.
    """

    def __init__(self, *, kubeconfig: str | None = None, context: str | None = None,
                 audience: str = DEFAULT_AUDIENCE, timeout: float = 10.0,
                 credentials: kubeclient.Credentials | None = None) -> None:
        if not isinstance(audience, str) or not audience.strip():
            raise ValueError(f"audience {audience!r}: expected a non-empty string")
        if credentials is None:
            credentials = (kubeclient.from_kubeconfig(kubeconfig, context=context)
                           if kubeconfig else kubeclient.in_cluster())
        self.audience = audience
        self.timeout = timeout
        self._client = kubeclient.Client(credentials, connect_timeout=timeout)

    def review(self, token: str) -> PodClaims:
        token = check_token(token)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token, "audiences": [self.audience]}}
        try:
            doc = self._client.post_json(REVIEW_PATH, body, timeout=self.timeout)
        except kubeclient.ApiError as exc:
            raise _unavailable(exc, token) from None
        except (OSError, ValueError) as exc:  # connection, TLS, timeout, bad JSON
            raise ReviewUnavailable(f"TokenReview: cannot reach the Kubernetes API server "
                                    f"{self._client.creds.server}: "
                                    f"{_scrub(str(exc), token)}") from None
        return claims_from_review(doc, audience=self.audience, token=token)


def check_token(token: object) -> str:
    """The token, stripped, if it is shaped like one (bounded size, token characters)."""
    if not isinstance(token, str):
        raise TokenRejected(f"token: expected a string, got {type(token).__name__}")
    token = token.strip()
    if not token:
        raise TokenRejected("token is empty")
    size = len(token.encode())
    if size > MAX_TOKEN_BYTES:
        raise TokenRejected(f"token of {size} bytes exceeds the {MAX_TOKEN_BYTES}-byte limit")
    if not _TOKEN_CHARS.match(token):
        raise TokenRejected("token holds characters no service account token has")
    return token


def claims_from_review(doc: object, *, audience: str, token: str = "") -> PodClaims:
    """PodClaims from a TokenReview answer (pure); TokenRejected names what is missing."""
    status = doc.get("status") if isinstance(doc, dict) else None
    if not isinstance(status, dict):
        raise ReviewUnavailable("TokenReview: the API server's answer has no status")
    if status.get("authenticated") is not True:
        reason = _scrub(str(status.get("error") or "no reason given"), token)
        raise TokenRejected(f"token not authenticated by the Kubernetes API server: {reason}")
    audiences = status.get("audiences")
    if not isinstance(audiences, list) or audience not in audiences:
        raise TokenRejected(f"token is not for audience {audience!r} (the API server "
                            f"accepted it for {audiences!r})")
    user = status.get("user") if isinstance(status.get("user"), dict) else {}
    username = str(user.get("username") or "")
    namespace, _, service_account = username.removeprefix(_SA_PREFIX).partition(":")
    if (not username.startswith(_SA_PREFIX) or not _DNS_LABEL.match(namespace)
            or not _DNS_SUBDOMAIN.match(service_account)):
        raise TokenRejected(f"token is not a service account token (user {username[:100]!r})")
    extra = user.get("extra") if isinstance(user.get("extra"), dict) else {}
    pod, pod_uid = _one(extra, "pod-name"), _one(extra, "pod-uid")
    if not pod or not pod_uid:
        raise TokenRejected(f"token of {username} is not bound to a pod: present the "
                            "projected service account token of the agent's pod")
    node = _one(extra, "node-name")
    if not node:
        raise TokenRejected(f"token of {username} for pod {namespace}/{pod} names no node "
                            "(the cluster must add node claims: Kubernetes 1.30 or later)")
    if not (_DNS_SUBDOMAIN.match(pod) and _DNS_SUBDOMAIN.match(node) and _UID.match(pod_uid)):
        raise TokenRejected(f"token of {username}: pod or node name is malformed")
    return PodClaims(namespace=namespace, pod=pod, pod_uid=pod_uid, node=node,
                     service_account=service_account)


def _one(extra: dict, key: str) -> str:
    values = extra.get(_EXTRA + key)
    if isinstance(values, list) and len(values) == 1 and isinstance(values[0], str):
        return values[0]
    return ""


def _unavailable(exc: kubeclient.ApiError, token: str) -> ReviewUnavailable:
    message = _scrub(exc.message, token)
    if exc.status == 403:
        return ReviewUnavailable(
            "TokenReview: the colony's Kubernetes identity may not create tokenreviews "
            "(group authentication.k8s.io); bind it to the ClusterRole coral-colony-"
            f"tokenreview (coral manifests render). API server said: {message}")
    if exc.status == 401:
        return ReviewUnavailable("TokenReview: the Kubernetes API server refused the "
                                 "colony's own credentials (HTTP 401); check the colony's "
                                 "kubeconfig or service account")
    return ReviewUnavailable(f"TokenReview: HTTP {exc.status} {exc.reason}: {message}")


def _scrub(text: str, token: str) -> str:
    """Never echo the token, even if a server or library put it in a message."""
    if token:
        text = text.replace(token, "<token>")
    return text[:300]
