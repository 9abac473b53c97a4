"""Agent identity shared by colony and agent: ids, SPIFFE URIs, and the per-call proof format.

An agent proves on every Mesh call that it holds the key of a certificate the colony
issued, in call metadata (TLS client certificates cannot be optional on one gRPC Python
port, and a TLS-bound identity cannot rotate without dropping the link):

    coral-agent-cert   base64 DER of the agent's certificate
    coral-agent-ts     unix seconds when the call was made
    coral-agent-nonce  random, never reused within the replay window
    coral-agent-proof  base64 ECDSA-SHA256 signature over proof_payload(method, ts, nonce)

Agent ids are derived by the colony, never chosen by the agent: host agents get the id
bound in their join token, DaemonSet agents `node-<node>`, sidecars `pod-<namespace>.<pod>`
(a namespace holds no dot, so the split is unambiguous).
"""

from __future__ import annotations

import dataclasses
import re

CERT_KEY, TS_KEY, NONCE_KEY, PROOF_KEY = (
    "coral-agent-cert", "coral-agent-ts", "coral-agent-nonce", "coral-agent-proof")
PROOF_CONTEXT = b"coral-agent-v1\n"
KINDS = ("host", "node", "pod")
RESERVED_PREFIXES = ("node-", "pod-")
MAX_ID = 253

# Host ids: DNS-like names, as hostnames and Kubernetes object names are.
_ID = re.compile(r"[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class IdentityError(ValueError):
    """An id, URI or name that cannot name an agent; the message says what is accepted."""


@dataclasses.dataclass(frozen=True)
class AgentIdentity:
    """Who an agent is, as its certificate says."""

    agent_id: str
    kind: str  # host | node | pod
    node: str = ""
    namespace: str = ""
    pod: str = ""


def proof_payload(method: str, ts: str, nonce: str) -> bytes:
    """The bytes an agent signs for one call to `method` (e.g. /coral.mesh.v1.Mesh/Register)."""
    return PROOF_CONTEXT + f"{method}\n{ts}\n{nonce}".encode()


def check_host_id(agent_id: str) -> str:
    """A host agent id for a join token: DNS-like, not using the Kubernetes prefixes."""
    if not isinstance(agent_id, str) or not _ID.fullmatch(agent_id):
        raise IdentityError(
            f"agent id {agent_id[:80]!r}: expected 1-{MAX_ID} characters of a-z, 0-9, '.', "
            "'_' or '-', starting and ending with a letter or digit")
    if agent_id.startswith(RESERVED_PREFIXES):
        raise IdentityError(
            f"agent id {agent_id!r}: the prefixes node- and pod- are reserved for Kubernetes "
            "agents, whose ids the colony derives from their service account token")
    return agent_id


def _check_name(value: str, what: str, pattern: re.Pattern[str] = _ID) -> str:
    if not pattern.fullmatch(value or ""):
        raise IdentityError(f"{what} {value[:80]!r} is not a valid Kubernetes name")
    return value


def node_identity(node: str) -> AgentIdentity:
    node = _check_name(node, "node")
    return AgentIdentity(agent_id=f"node-{node}", kind="node", node=node)


def pod_identity(namespace: str, pod: str, node: str = "") -> AgentIdentity:
    namespace = _check_name(namespace, "namespace", _DNS_LABEL)
    pod = _check_name(pod, "pod")
    return AgentIdentity(agent_id=f"pod-{namespace}.{pod}", kind="pod", node=node,
                         namespace=namespace, pod=pod)


def host_identity(agent_id: str) -> AgentIdentity:
    return AgentIdentity(agent_id=check_host_id(agent_id), kind="host")


def spiffe_uri(colony_id: str, who: AgentIdentity) -> str:
    if who.kind == "host":
        return f"spiffe://{colony_id}/host/{who.agent_id}"
    if who.kind == "node":
        return f"spiffe://{colony_id}/node/{who.node}"
    return f"spiffe://{colony_id}/ns/{who.namespace}/pod/{who.pod}"


def parse_spiffe(uri: str, *, colony_id: str, node: str = "") -> AgentIdentity:
    """The identity a certificate's URI SAN names; IdentityError unless it is this colony's.
    `node` is the pod's node for pod identities (informational, from the certificate)."""
    prefix = f"spiffe://{colony_id}/"
    if not uri.startswith(prefix):
        raise IdentityError(f"certificate URI {uri[:120]!r} does not belong to colony {colony_id}")
    parts = uri[len(prefix):].split("/")
    if len(parts) == 2 and parts[0] == "host":
        return host_identity(parts[1])
    if len(parts) == 2 and parts[0] == "node":
        return node_identity(parts[1])
    if len(parts) == 4 and parts[0] == "ns" and parts[2] == "pod":
        return pod_identity(parts[1], parts[3], node)
    raise IdentityError(f"certificate URI {uri[:120]!r}: expected host/<id>, node/<node> or "
                        "ns/<namespace>/pod/<pod>")


def scope_violation(who: AgentIdentity, *, node_name: str, namespace: str, pod: str,
                    host_node: str = "") -> str:
    """'' when an agent with identity `who` may register a service with these fields, else
    why not. A node agent holds its node's services; a sidecar its own pod's; a host agent
    only host services (no namespace/pod) on itself (`host_node`: the host name it
    registered with, checked by the caller against node identities)."""
    if who.kind == "node":
        if node_name != who.node:
            return f"node agent {who.agent_id} may register services of node {who.node} only, " \
                   f"not of node {node_name[:80]!r}"
        return ""
    if who.kind == "pod":
        if (namespace, pod) != (who.namespace, who.pod):
            return (f"sidecar {who.agent_id} may register services of pod "
                    f"{who.namespace}/{who.pod} only, not of {namespace[:80]}/{pod[:80]}")
        return ""
    if namespace or pod:
        return f"host agent {who.agent_id} may not register Kubernetes services " \
               f"({namespace[:80]}/{pod[:80]})"
    if node_name not in ("", who.agent_id, host_node):
        return f"host agent {who.agent_id} may register services of its own host only, " \
               f"not of node {node_name[:80]!r}"
    return ""
