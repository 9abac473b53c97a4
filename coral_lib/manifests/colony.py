"""What the colony needs in a cluster: its own identity, allowed to run TokenReviews.

Agents in Kubernetes prove who they are with their pod's projected service account token
(audience `coral`); the colony checks each one with the API server's TokenReview
(coral_lib.colony.tokenreview). That needs `create` on `tokenreviews`
(authentication.k8s.io) and nothing else: the review itself says which pod and node the
token is bound to. Rendered by the DaemonSet and webhook modes alike (both have agents to
admit), with the same names, so applying both is idempotent.

A colony inside the cluster runs as the ServiceAccount; one outside uses a kubeconfig
holding a token of it (e.g. `kubectl create token coral-colony -n coral-system`).
"""

from __future__ import annotations

from typing import Any

from coral_lib.manifests import objects
from coral_lib.manifests import settings as settings_mod

ROLE = "coral-colony-tokenreview"
COMPONENT = {"app.kubernetes.io/component": "colony-auth"}
RULES = [{"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
          "verbs": ["create"]}]


def rbac(settings: settings_mod.ManifestSettings) -> list[dict[str, Any]]:
    """ServiceAccount, ClusterRole and ClusterRoleBinding of the colony."""
    sa, ns = settings.colony_service_account, settings.namespace
    out = [objects.service_account(sa, ns), objects.cluster_role(ROLE, RULES),
           objects.cluster_role_binding(ROLE, ns, service_account=sa)]
    for obj in out:
        obj["metadata"]["labels"].update(COMPONENT)
    return out
