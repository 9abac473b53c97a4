"""The resource kinds the fixture serves, and the discovery documents built from them."""

from __future__ import annotations

import dataclasses

_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclasses.dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    has_status: bool = False  # status is a subresource: main updates keep it
    has_generation: bool = False  # metadata.generation bumped on spec changes
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = tuple(_VERBS)  # what discovery lists (tokenreviews: create)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def singular(self) -> str:
        return self.kind.lower()


def _rt(group, version, kind, plural, namespaced, short=(), *, status=False, gen=False, sub=(),
        verbs=tuple(_VERBS)):
    subs = (("status",) if status else ()) + tuple(sub)
    return ResourceType(group, version, kind, plural, namespaced, tuple(short),
                        status, gen, subs, tuple(verbs))


TYPES: list[ResourceType] = [
    _rt("", "v1", "Pod", "pods", True, ["po"], status=True, sub=["exec"]),
    _rt("", "v1", "Namespace", "namespaces", False, ["ns"], status=True),
    _rt("", "v1", "Node", "nodes", False, ["no"], status=True),
    _rt("", "v1", "ServiceAccount", "serviceaccounts", True, ["sa"], sub=["token"]),
    _rt("", "v1", "Service", "services", True, ["svc"], status=True),
    _rt("", "v1", "Secret", "secrets", True),
    _rt("", "v1", "ConfigMap", "configmaps", True, ["cm"]),
    _rt("", "v1", "Event", "events", True, ["ev"]),
    _rt("", "v1", "PodTemplate", "podtemplates", True),
    _rt("apps", "v1", "DaemonSet", "daemonsets", True, ["ds"], status=True, gen=True),
    _rt("apps", "v1", "Deployment", "deployments", True, ["deploy"], status=True, gen=True),
    _rt("apps", "v1", "ReplicaSet", "replicasets", True, ["rs"], status=True, gen=True),
    _rt("apps", "v1", "ControllerRevision", "controllerrevisions", True),
    _rt("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    _rt("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _rt("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    _rt("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    _rt("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ["pdb"],
        status=True, gen=True),
    _rt("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations", False, gen=True),
    _rt("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations", False, gen=True),
    # create-only and never stored: answered by authn.TokenAuthority
    _rt("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", False, verbs=["create"]),
]

_BY_PATH = {(t.group, t.version, t.plural): t for t in TYPES}
_BY_KIND = {(t.api_version, t.kind): t for t in TYPES}
_BY_NAME = {}
for _t in TYPES:
    for _n in (_t.plural, _t.kind, _t.key, _t.singular, *_t.short_names):
        _BY_NAME.setdefault(_n, _t)


def by_path(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_PATH.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    return _BY_KIND.get((api_version, kind))


def lookup(name: str) -> ResourceType:
    """Find a type by plural, Kind, singular, short name or `plural.group`."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown resource {name!r}; known: "
                       f"{sorted(t.plural for t in TYPES)}") from None


def groups() -> dict[str, list[str]]:
    """group -> versions (the core group is "")."""
    out: dict[str, list[str]] = {}
    for t in TYPES:
        versions = out.setdefault(t.group, [])
        if t.version not in versions:
            versions.append(t.version)
    return out


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group_doc(name: str, versions: list[str]) -> dict:
    vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": vs, "preferredVersion": vs[0]}


def api_group_list() -> dict:
    groups_ = [_group_doc(g, vs) for g, vs in groups().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups_}


def api_group(name: str) -> dict | None:
    versions = groups().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(name, versions)}


def api_resource_list(group: str, version: str) -> dict | None:
    members = [t for t in TYPES if t.group == group and t.version == version]
    if not members:
        return None
    resources = []
    for t in members:
        resources.append({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
            "kind": t.kind, "verbs": list(t.verbs), "shortNames": list(t.short_names),
        })
        for sub in t.subresources:
            verbs = {"status": ["get", "patch", "update"], "token": ["create"]}.get(
                sub, ["create", "get"])
            kind = {"exec": "PodExecOptions", "token": "TokenRequest"}.get(sub, t.kind)
            resources.append({"name": f"{t.plural}/{sub}", "singularName": "",
                              "namespaced": t.namespaced, "kind": kind, "verbs": verbs})
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}


VERSION = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.0-coral-fixture",
    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
    "platform": "linux/amd64",
}
