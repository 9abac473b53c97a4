"""Patch semantics: JSON merge patch, JSON patch, strategic merge patch, server-side apply.

Strategic merge knows the list merge keys our roles and clients touch (containers by name,
ports by containerPort, ...); any other list is replaced, as merge patch does.
"""

from __future__ import annotations

import copy

import jsonpatch

from tests.support.kubeapi import errors

# field name -> merge key, for lists merged element by element (strategic merge).
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "volumes": "name", "env": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "imagePullSecrets": "name", "hostAliases": "ip", "topologySpreadConstraints": "topologyKey",
    "ports": "containerPort", "conditions": "type", "ownerReferences": "uid",
    "finalizers": None,  # set-like list of scalars: union
    "tolerations": None,
}
# Service ports merge on port, not containerPort.
_SERVICE_PORT_KEY = "port"


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def json_patch(target: dict, ops: object) -> dict:
    if not isinstance(ops, list):
        raise errors.bad_request("json patch body must be a JSON array of operations")
    try:
        return jsonpatch.JsonPatch(ops).apply(target)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError,
            KeyError, IndexError, AttributeError) as exc:
        raise errors.ApiError(422, f"the JSON patch could not be applied: {exc}") from None


def strategic_merge(target: object, patch: object, *, path: tuple[str, ...] = ()) -> object:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            out[field] = [v for v in out.get(field) or [] if v not in value]
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS:
            out[key] = _merge_list(out.get(key), value, key=_merge_key(key, path))
        else:
            out[key] = strategic_merge(out.get(key), value, path=path + (key,))
    return out


def _merge_key(field: str, path: tuple[str, ...]) -> str | None:
    if field == "ports" and path[-1:] == ("spec",) and "template" not in path:
        return _SERVICE_PORT_KEY
    return MERGE_KEYS[field]


def _merge_list(current: object, patch: list, *, key: str | None) -> list:
    base = list(current) if isinstance(current, list) else []
    if key is None:
        return base + [v for v in patch if v not in base]
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [p for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    for item in patch:
        if not isinstance(item, dict):
            base.append(item)
            continue
        idx = next((i for i, b in enumerate(base)
                    if isinstance(b, dict) and b.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                base.pop(idx)
        elif idx is None:
            base.append(strategic_merge({}, item))
        else:
            base[idx] = strategic_merge(base[idx], item)
    return base


def apply_patch(existing: dict, applied: dict, previous: dict | None) -> dict:
    """Server-side apply for one field manager (fixture behaviour, documented):

    fields the manager applied before and no longer applies are removed, then the applied
    configuration is merged in strategically. Field ownership across managers and
    conflicts are not modelled.
    """
    base = _remove_dropped(existing, previous or {}, applied)
    return strategic_merge(base, applied)


def _remove_dropped(current: object, previous: object, applied: object,
                    path: tuple[str, ...] = ()) -> object:
    if not isinstance(current, dict) or not isinstance(previous, dict):
        return current
    applied = applied if isinstance(applied, dict) else {}
    out = dict(current)
    for key, prev_value in previous.items():
        if key in ("apiVersion", "kind"):
            continue
        if key not in applied:
            out.pop(key, None)
        elif isinstance(prev_value, dict):
            out[key] = _remove_dropped(out.get(key), prev_value, applied[key], path + (key,))
        elif isinstance(prev_value, list) and MERGE_KEYS.get(key):
            out[key] = _remove_dropped_items(out.get(key), prev_value, applied[key],
                                             key=_merge_key(key, path))
    return out


def _remove_dropped_items(current: object, previous: list, applied: object, *,
                          key: str) -> object:
    """Keyed list: drop items this manager applied before and no longer applies; recurse
    into items it still applies."""
    if not isinstance(current, list) or not isinstance(applied, list):
        return current
    prev, now = _by_key(previous, key), _by_key(applied, key)
    out = []
    for item in current:
        k = item.get(key) if isinstance(item, dict) else None
        if k in prev and k not in now:
            continue
        if k in prev:
            item = _remove_dropped(item, prev[k], now[k])
        out.append(item)
    return out


def _by_key(items: list, key: str) -> dict:
    return {i.get(key): i for i in items if isinstance(i, dict)}
