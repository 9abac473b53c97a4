"""A minimal OpenAPI v3 discovery: enough for kubectl to see that the server validates
fields itself (`fieldValidation` among each kind's PATCH operation parameters), so
`kubectl apply` validates server-side instead of downloading schemas. No component
schemas are served: kubectl's client-side apply then computes strategic merge patches
from its compiled-in types.
"""

from __future__ import annotations

from tests.support.kubeapi import resources

_HASH = "C0RA1F1XTURE"
_PARAMS = [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
           for n in ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")]


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def index() -> dict:
    paths = {_gv_path(g, v): {"serverRelativeURL": f"/openapi/v3/{_gv_path(g, v)}?hash={_HASH}"}
             for g, versions in resources.groups().items() for v in versions}
    return {"paths": paths}


def group_version(path: str) -> dict | None:
    """Document for 'api/v1' or 'apis/<group>/<version>'."""
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[:1] == ["apis"] and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        return None
    members = [t for t in resources.TYPES if t.group == group and t.version == version]
    if not members:
        return None
    paths = {}
    for t in members:
        prefix = "/" + _gv_path(group, version)
        if t.namespaced:
            prefix += "/namespaces/{namespace}"
        gvk = {"group": group, "version": version, "kind": t.kind}
        paths[f"{prefix}/{t.plural}/{{name}}"] = {
            "patch": {"operationId": f"patch{t.kind}", "parameters": _PARAMS,
                      "x-kubernetes-action": "patch",
                      "x-kubernetes-group-version-kind": gvk,
                      "responses": {"200": {"description": "OK"}}},
            "put": {"operationId": f"replace{t.kind}", "parameters": _PARAMS,
                      "x-kubernetes-action": "put",
                    "x-kubernetes-group-version-kind": gvk,
                    "responses": {"200": {"description": "OK"}}},
        }
        paths[f"{prefix}/{t.plural}"] = {
            "post": {"operationId": f"create{t.kind}", "parameters": _PARAMS,
                      "x-kubernetes-action": "post",
                     "x-kubernetes-group-version-kind": gvk,
                     "responses": {"201": {"description": "Created"}}},
        }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": {}}}
