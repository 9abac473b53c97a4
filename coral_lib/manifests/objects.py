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


# Kubernetes' conventional field order: what a reader looks for first comes first.
_TOP_ORDER = ("apiVersion", "kind", "metadata", "spec")
_METADATA_ORDER = ("name", "generateName", "namespace", "labels", "annotations")


def _ordered(mapping: dict[str, Any], first: tuple[str, ...], last: tuple[str, ...] = ()
             ) -> dict[str, Any]:
    head = [k for k in first if k in mapping]
    tail = [k for k in last if k in mapping]
    middle = [k for k in mapping if k not in head and k not in tail]
    return {k: mapping[k] for k in (*head, *middle, *tail)}


def conventional_order(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` with apiVersion, kind, metadata (name, namespace, labels, annotations), spec
    first and status last; other keys keep the renderer's order. A new dict; `obj` unchanged."""
    out = _ordered(obj, _TOP_ORDER, ("status",))
    if isinstance(out.get("metadata"), dict):
        out["metadata"] = _ordered(out["metadata"], _METADATA_ORDER)
    return out
