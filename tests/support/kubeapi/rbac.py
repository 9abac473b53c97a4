"""RBAC authorization as kube-apiserver's RBAC authorizer does it (pure over bindings).

Request attributes: verb (get/list/watch/create/update/patch/delete/deletecollection),
API group, resource (`plural` or `plural/subresource`), namespace, name; or a non-resource
path. Rules of Roles (RoleBindings in the request's namespace) and ClusterRoles
(ClusterRoleBindings anywhere; RoleBindings in the namespace) grant; nothing denies.
`system:masters` may do anything (the admin token and client certificate are in it);
every authenticated user may read the discovery paths (system:discovery and
system:public-info-viewer, which kube-apiserver bootstraps).

Not modelled: aggregated ClusterRoles, escalation checks on writing roles, the Node
authorizer, webhooks.
"""

from __future__ import annotations

import dataclasses
import fnmatch

from tests.support.kubeapi import authn, errors

DISCOVERY_PATHS = ("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz",
                   "/version", "/version/", "/openapi", "/openapi/*", "/.well-known/*")


@dataclasses.dataclass(frozen=True)
class Attributes:
    verb: str
    group: str = ""
    resource: str = ""  # plural, or plural/subresource; "" for a non-resource request
    namespace: str = ""
    name: str = ""
    path: str = ""


def verb_for(method: str, *, has_name: bool, is_watch: bool, sub: str | None) -> str:
    if sub == "exec":
        return "create"  # websocket GETs too (AuthorizePodWebsocketUpgradeCreatePermission)
    if method == "GET":
        return "watch" if is_watch else ("get" if has_name else "list")
    if method == "DELETE":
        return "delete" if has_name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def _subject_matches(subject: dict, user: authn.User, binding_ns: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return user.name == f"system:serviceaccount:{ns}:{name}"
    return False


def _rule_allows(rule: dict, attrs: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.resource:
        return any(u == attrs.path or (u.endswith("*") and attrs.path.startswith(u[:-1]))
                   for u in rule.get("nonResourceURLs") or [])
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.group not in groups:
        return False
    resources = rule.get("resources") or []
    plural, _, sub = attrs.resource.partition("/")
    if not any(r in ("*", attrs.resource) or (sub and r == f"*/{sub}") for r in resources):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def _rules(store, kind: str, name: str, namespace: str) -> list[dict]:
    try:
        if kind == "ClusterRole":
            return store.get("clusterroles", name).get("rules") or []
        if kind == "Role":
            return store.get("roles", name, namespace=namespace).get("rules") or []
    except errors.ApiError:
        pass  # a binding to a missing role grants nothing, as upstream
    return []


def allowed(store, user: authn.User, attrs: Attributes) -> bool:
    if user.is_admin:
        return True
    if not attrs.resource and "system:authenticated" in user.groups and any(
            fnmatch.fnmatchcase(attrs.path, p) for p in DISCOVERY_PATHS):
        return True
    bindings = [(b, "") for b in store.list("clusterrolebindings")]
    if attrs.namespace:
        bindings += [(b, attrs.namespace)
                     for b in store.list("rolebindings", namespace=attrs.namespace)]
    for binding, ns in bindings:
        if not any(_subject_matches(s, user, ns) for s in binding.get("subjects") or []
                   if isinstance(s, dict)):
            continue
        ref = binding.get("roleRef") or {}
        for rule in _rules(store, ref.get("kind", ""), ref.get("name", ""), ns):
            if isinstance(rule, dict) and _rule_allows(rule, attrs):
                return True
    return False


def forbidden(user: authn.User, attrs: Attributes) -> errors.ApiError:
    """The 403 Status kube-apiserver answers with."""
    if not attrs.resource:
        return errors.ApiError(403, f'forbidden: User "{user.name}" cannot {attrs.verb} '
                               f'path "{attrs.path}"')
    plural, _, sub = attrs.resource.partition("/")
    what = f"{plural}.{attrs.group}" if attrs.group else plural
    subject = f'{what} "{attrs.name}"' if attrs.name else what
    scope = (f'in the namespace "{attrs.namespace}"' if attrs.namespace
             else "at the cluster scope")
    return errors.ApiError(
        403, f'{subject} is forbidden: User "{user.name}" cannot {attrs.verb} resource '
             f'"{attrs.resource}" in API group "{attrs.group}" {scope}',
        details={"name": attrs.name, "group": attrs.group, "kind": plural})
