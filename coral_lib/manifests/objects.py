"""Small builders shared by the renderers: metadata, labels, env entries."""

from __future__ import annotations

from typing import Any

PART_OF = {"app.kubernetes.io/part-of": "coral"}


def labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, **PART_OF}


def meta(name: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": labels(name)}
    if namespace:
        metadata["namespace"] = namespace
    metadata.update(extra)
    return metadata


def namespace(name: str, **labels_extra: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {**PART_OF, **labels_extra}}}


def service_account(name: str, namespace_name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name, namespace_name)}


def cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(name), "rules": rules}


def cluster_role_binding(name: str, namespace_name: str,
                         service_account: str | None = None) -> dict[str, Any]:
    """Binds the ClusterRole `name` to the ServiceAccount `service_account` (default: `name`)
    in namespace_name."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": meta(name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": service_account or name,
                      "namespace": namespace_name}],
    }


def field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}
