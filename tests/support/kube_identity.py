"""Kubernetes agents' identity in tests: what a cluster gives the colony and its agents.

The colony reviews agents' projected service account tokens (TokenReview) as its own
service account `coral-system/coral-colony`, authorized only by the RBAC the manifests
render. Agents present a token bound to their pod, requested through the API server
fixture's TokenRequest exactly as kubelet does for a projected volume (audience `coral`).
"""

from __future__ import annotations

import pathlib

from coral_lib import manifests

SYSTEM = "coral-system"
AGENT_SA = "coral-agent"


def _ensure(server, obj: dict) -> dict:
    meta = obj["metadata"]
    kind = {"Namespace": "namespaces", "ServiceAccount": "serviceaccounts",
            "Pod": "pods"}.get(obj["kind"])
    if kind:
        try:
            return server.store.get(kind, meta["name"], namespace=meta.get("namespace"))
        except Exception:  # noqa: BLE001 - not there yet
            pass
    return server.store.create(obj)


def colony_kubeconfig(server, path: pathlib.Path) -> str:
    """The colony's TokenReview credentials (namespace, RBAC and account created)."""
    from coral_lib.manifests import colony as colony_manifests  # the RBAC users deploy
    _ensure(server, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM}})
    for obj in colony_manifests.rbac(manifests.ManifestSettings()):
        try:
            server.store.create(obj)
        except Exception:  # noqa: BLE001 - created by an earlier call
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    return server.service_account_kubeconfig(SYSTEM, "coral-colony", path,
                                             expiration_seconds=86400)


def pod_token(server, namespace: str, pod: str, path: pathlib.Path, *,
              service_account: str = "default", node: str = "node-a") -> pathlib.Path:
    """Write a token bound to `pod` (created, with its service account, when missing)."""
    _ensure(server, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    _ensure(server, {"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": service_account, "namespace": namespace}})
    body = _ensure(server, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": namespace},
        "spec": {"serviceAccountName": service_account, "nodeName": node,
                 "containers": [{"name": "agent", "image": "docker.io/local/coral"}]}})
    token = server.tokens.request(namespace, service_account, {"spec": {
        "audiences": ["coral"], "expirationSeconds": 3600,
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod,
                           "uid": body["metadata"]["uid"]}}})["status"]["token"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    return path


def node_agent_token(server, node: str, path: pathlib.Path) -> pathlib.Path:
    """The DaemonSet pod of `node` and its token (a node identity: node-<node>)."""
    return pod_token(server, SYSTEM, f"coral-agent-{node}", path, service_account=AGENT_SA,
                     node=node)
