"""URL path -> what it names (pure)."""

from __future__ import annotations

import dataclasses

from tests.support.kubeapi import errors, resources


@dataclasses.dataclass(frozen=True)
class Route:
    rt: resources.ResourceType
    namespace: str | None  # None: all namespaces (or cluster scope)
    name: str | None
    sub: str | None


def parse(path: str) -> Route | None:
    """Resource route for /api/v1/... and /apis/<g>/<v>/...; None for non-resource paths."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api" and parts[1] == "v1":
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and resources.by_path(group, version, rest[2]):
        namespace, rest = rest[1], rest[2:]
    rt = resources.by_path(group, version, rest[0])
    if rt is None:
        raise errors.ApiError(404, f"the server could not find the requested resource "
                              f"({'/'.join(parts)})", reason="NotFound")
    if namespace is not None and not rt.namespaced:
        raise errors.ApiError(404, f"{rt.plural} is not namespaced", reason="NotFound")
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if len(rest) > 3 or (sub is not None and sub not in rt.subresources):
        raise errors.ApiError(404, f"the server could not find the requested resource "
                              f"({'/'.join(parts)})", reason="NotFound")
    return Route(rt, namespace if rt.namespaced else None, name, sub)
