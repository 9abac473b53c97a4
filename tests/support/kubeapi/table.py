"""Server-side printing (meta.k8s.io/v1 Table), which kubectl asks for on `get` without
`-o`: a few columns per kind, like the real server's printers."""

from __future__ import annotations

import datetime
import json

_STR = "string"


def wants_table(accept: str) -> bool:
    first = accept.split(",")[0]
    return "as=Table" in first and "g=meta.k8s.io" in first


def _age(obj: dict) -> str:
    ts = obj.get("metadata", {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    born = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    secs = max(int((datetime.datetime.now(datetime.UTC) - born).total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def _pod(obj: dict) -> list:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    total = len((obj.get("spec") or {}).get("containers") or [])
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    phase = (obj.get("status") or {}).get("phase", "Unknown")
    if obj.get("metadata", {}).get("deletionTimestamp"):
        phase = "Terminating"
    return [f"{ready}/{total}", phase, restarts, _age(obj)]


def _node(obj: dict) -> list:
    conds = (obj.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
    version = ((obj.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")
    return ["Ready" if ready else "NotReady", "<none>", _age(obj), version]


def _deployment(obj: dict) -> list:
    st, want = obj.get("status") or {}, (obj.get("spec") or {}).get("replicas", 1)
    return [f"{st.get('readyReplicas', 0)}/{want}", st.get("updatedReplicas", 0),
            st.get("availableReplicas", 0), _age(obj)]


def _daemonset(obj: dict) -> list:
    st = obj.get("status") or {}
    return [st.get(k, 0) for k in ("desiredNumberScheduled", "currentNumberScheduled",
                                   "numberReady", "updatedNumberScheduled",
                                   "numberAvailable")] + [_age(obj)]


_COLUMNS = {
    "pods": (["Ready", "Status", "Restarts", "Age"], _pod),
    "nodes": (["Status", "Roles", "Age", "Version"], _node),
    "deployments": (["Ready", "Up-to-date", "Available", "Age"], _deployment),
    "daemonsets": (["Desired", "Current", "Ready", "Up-to-date", "Available", "Age"],
                   _daemonset),
}


def table(plural: str, objs: list[dict], *, rv: str, include: str) -> dict:
    extra, cells = _COLUMNS.get(plural, (["Age"], lambda o: [_age(o)]))
    names = ["Name", *extra]
    columns = [{"name": n, "type": "integer" if n == "Restarts" else _STR,
                "format": "name" if n == "Name" else "", "description": n, "priority": 0}
               for n in names]
    rows = [{"cells": [o["metadata"]["name"], *cells(o)],
             "object": _row_object(o, include)} for o in objs]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": rv}, "columnDefinitions": columns, "rows": rows}


def _row_object(obj: dict, include: str) -> dict | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}


def watch_line(plural: str, line: bytes, *, include: str) -> bytes:
    """A watch event line with its object printed as a one-row Table."""
    ev = json.loads(line)
    if ev.get("type") in ("ERROR", "BOOKMARK"):
        return line
    obj = ev["object"]
    ev["object"] = table(plural, [obj], rv=obj["metadata"].get("resourceVersion", ""),
                         include=include)
    return json.dumps(ev).encode() + b"\n"
