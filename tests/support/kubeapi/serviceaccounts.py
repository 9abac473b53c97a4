"""The ServiceAccount admission plugin and the controllers behind it (opt-in).

kube-apiserver's ServiceAccount admission gives every pod `serviceAccountName: default`
when it names none and, unless `automountServiceAccountToken: false` (pod or account),
a `kube-api-access-<suffix>` projected volume (a bound token for the API's audience, the
`kube-root-ca.crt` ConfigMap's `ca.crt`, the namespace) mounted read-only at
/var/run/secrets/kubernetes.io/serviceaccount in every container. kube-controller-manager
creates the `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap per namespace
(`ensure_namespace_defaults`). The fixture does this only when
`server.store.service_accounts = True` (tests/support/podrunner.py clusters), so older
tests keep seeing pods exactly as they created them.
"""

from __future__ import annotations

import secrets

from tests.support.kubeapi import errors

MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA = "kube-root-ca.crt"


def admit_pod(store, namespace: str, pod: dict) -> None:
    """Mutate a pod being created, as the ServiceAccount admission plugin does."""
    spec = pod.setdefault("spec", {})
    sa_name = spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", sa_name)
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        try:
            sa = store.get("serviceaccounts", sa_name, namespace=namespace)
            automount = sa.get("automountServiceAccountToken")
        except errors.ApiError:
            automount = None
    if automount is False:
        return
    if any(m.get("mountPath") == MOUNT_PATH for c in _containers(spec)
           for m in c.get("volumeMounts") or []):
        return  # the pod mounts its own token there: leave it
    name = f"kube-api-access-{secrets.token_hex(3)[:5]}"
    spec.setdefault("volumes", []).append({"name": name, "projected": {
        "defaultMode": 0o644, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": ROOT_CA, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}})
    for container in _containers(spec):
        container.setdefault("volumeMounts", []).append(
            {"name": name, "mountPath": MOUNT_PATH, "readOnly": True})


def _containers(spec: dict) -> list[dict]:
    return [c for key in ("initContainers", "containers") for c in spec.get(key) or []
            if isinstance(c, dict)]


def ensure_namespace_defaults(store, ca_pem: bytes) -> None:
    """The `default` ServiceAccount and `kube-root-ca.crt` ConfigMap in every namespace."""
    for ns in store.list("namespaces"):
        name = ns["metadata"]["name"]
        if ns.get("status", {}).get("phase") == "Terminating":
            continue
        for obj in ({"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": "default", "namespace": name}},
                    {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": ROOT_CA, "namespace": name},
                     "data": {"ca.crt": ca_pem.decode()}}):
            plural = "serviceaccounts" if obj["kind"] == "ServiceAccount" else "configmaps"
            try:
                store.get(plural, obj["metadata"]["name"], namespace=name)
            except errors.ApiError:
                try:
                    store.create(obj, namespace=name)
                except errors.ApiError:
                    pass  # created meanwhile, or the namespace went away
