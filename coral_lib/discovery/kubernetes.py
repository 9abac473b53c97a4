"""DaemonSet discovery: list + watch the pods of one node, keep a local cache, say when it changes.

The loop (PodWatcher.run), as client-go's reflector does it:
1. list pods with `fieldSelector=spec.nodeName=<node>`; reconcile the cache with the list
   by diff (nothing is wiped first, so the agent never reports an empty set in between);
   read the node object for its labels (cached until the next list);
2. watch from the list's resourceVersion with bookmarks; every event and bookmark moves
   the resourceVersion on; a dropped or timed-out watch resumes from it without a list;
3. `410 Gone` (HTTP or an ERROR event) -> back to 1; every `resync_interval` -> back to 1;
4. errors back off exponentially with jitter (base 0.2 s, cap 30 s); a watch that ends
   within a second without events counts as an error, so nothing loops tightly.

The cache logic (apply_event, reconcile, backoff_delay) is pure; I/O is in PodWatcher's
`_list`, `_watch` and `_node_labels`, through coral_lib.discovery.kubeclient (pods stay
plain dicts: no model objects to build or keep; the official client would cost the agent
about 33 MB of RSS).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from coral_lib.discovery import kubeclient
from coral_lib.discovery import pods as pods_mod

log = logging.getLogger(__name__)

Pod = dict[str, Any]
BACKOFF_BASE, BACKOFF_CAP = 0.2, 30.0


class Gone(Exception):
    """The resourceVersion we watch from is compacted away: list again."""


# ---- pure --------------------------------------------------------------------------------

def backoff_delay(attempt: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP,
                  rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter: a delay in [d/2, d], d = min(cap, base * 2**attempt)."""
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return ceiling / 2 + rand() * ceiling / 2


def _rv_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


# What the node agent reads of a pod (discovery, overrides, exec targets, readiness
# probes): the watch cache keeps only these. A pod as the API serves it also carries
# metadata.managedFields (an entry per writer), volumes, env, resources, tolerations,
# conditions and container states -- several kB of dicts per pod that no agent code reads.
_KEEP_METADATA = ("name", "namespace", "uid", "labels", "annotations", "ownerReferences",
                  "deletionTimestamp", "resourceVersion")
_KEEP_SPEC = ("nodeName", "hostNetwork")
_KEEP_CONTAINER = ("name", "ports", "readinessProbe")
_KEEP_STATUS = ("phase", "podIP")
_KEEP_CONTAINER_STATUS = ("name", "containerID", "ready")


def _only(obj: Any, keys: tuple[str, ...]) -> dict:
    return {k: obj[k] for k in keys if k in obj} if isinstance(obj, Mapping) else {}


def _each(items: Any, keys: tuple[str, ...]) -> list:
    return [_only(i, keys) for i in items if isinstance(i, Mapping)] \
        if isinstance(items, list) else []


def slim(pod: Pod) -> Pod:
    """The pod as the cache keeps it: the fields the agent reads (_KEEP_*), a new dict
    (the event's object is not changed). About 1 kB of dicts instead of 10-40 kB for a
    typical pod of a real cluster, times every pod of the node."""
    out: Pod = {"metadata": _only(pod.get("metadata"), _KEEP_METADATA)}
    if "spec" in pod:
        spec = pod["spec"]
        out["spec"] = _only(spec, _KEEP_SPEC)
        if isinstance(spec, Mapping) and "containers" in spec:
            out["spec"]["containers"] = _each(spec["containers"], _KEEP_CONTAINER)
    if "status" in pod:
        status = pod["status"]
        out["status"] = _only(status, _KEEP_STATUS)
        if isinstance(status, Mapping) and "containerStatuses" in status:
            out["status"]["containerStatuses"] = _each(status["containerStatuses"],
                                                       _KEEP_CONTAINER_STATUS)
    return out


def apply_event(cache: dict[str, Pod], *, etype: str, obj: Pod) -> bool:
    """Apply one watch event to the cache (in place); True when the pod set changed."""
    key = pods_mod.pod_key(obj)
    if etype == "DELETED":
        return cache.pop(key, None) is not None
    if etype not in ("ADDED", "MODIFIED"):
        return False
    old, new = cache.get(key), slim(obj)
    cache[key] = new
    return old is None or _content(old) != _content(new)


def _content(pod: Mapping[str, Any]) -> tuple:
    """What discovery reads from a pod: a status-only change (conditions) is no change."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    return (meta.get("uid"), meta.get("labels"), meta.get("annotations"),
            meta.get("ownerReferences"), meta.get("deletionTimestamp"), pod.get("spec"),
            status.get("phase"))


def reconcile(cache: Mapping[str, Pod], listed: list[Pod]) -> tuple[dict[str, Pod], bool]:
    """The cache a full list says we should have, and whether it differs from `cache`."""
    fresh = {pods_mod.pod_key(p): slim(p) for p in listed}
    if fresh.keys() != cache.keys():
        return fresh, True
    return fresh, any(_content(cache[k]) != _content(p) for k, p in fresh.items())


# ---- edge ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Stats:
    """Counters for logs and tests: how often the watcher listed, watched, resumed."""

    lists: int = 0
    watches: int = 0
    events: int = 0
    bookmarks: int = 0
    gone: int = 0
    errors: int = 0
    node_reads: int = 0


def api_from(*, kubeconfig: str | None = None, context: str | None = None
             ) -> kubeclient.Client:
    """An API client from a kubeconfig file, or the in-cluster service account when None.
    Raises kubeclient.KubeConfigError naming what is wrong."""
    if kubeconfig:
        return kubeclient.Client(kubeclient.from_kubeconfig(kubeconfig, context=context))
    return kubeclient.Client(kubeclient.in_cluster())


class PodWatcher:
    """Keeps `pods` (key "ns/name" -> pod dict) equal to the node's pods; calls on_change."""

    def __init__(self, api: kubeclient.Client, *, node_name: str, resync_interval: float = 300.0,
                 watch_timeout: float = 300.0, on_change: Callable[[], None] | None = None
                 ) -> None:
        self.api, self.node_name = api, node_name
        self.resync_interval, self.watch_timeout = resync_interval, watch_timeout
        self.on_change = on_change or (lambda: None)
        self.lock = threading.Lock()
        self.pods: dict[str, Pod] = {}
        self.node_labels: dict[str, str] = {}
        self.resource_version = ""
        self.synced = threading.Event()
        self.stats = Stats()
        self._field_selector = f"spec.nodeName={node_name}"

    def snapshot(self) -> tuple[list[Pod], dict[str, str]]:
        with self.lock:
            return list(self.pods.values()), dict(self.node_labels)

    def run(self, stop: threading.Event) -> None:
        attempt, need_list, listed_at = 0, True, 0.0
        while not stop.is_set():
            try:
                if need_list or time.monotonic() - listed_at >= self.resync_interval:
                    self._list()
                    need_list, listed_at = False, time.monotonic()
                quick = self._watch(stop, timeout=self._watch_seconds(listed_at))
                attempt = attempt + 1 if quick else 0
            except Gone as exc:
                self.stats.gone += 1
                log.info("watch of pods on %s: %s; listing again", self.node_name, exc)
                need_list, attempt = True, attempt + 1
            except Exception as exc:  # noqa: BLE001 - any API/network failure: back off, retry
                self.stats.errors += 1
                attempt += 1
                need_list = need_list or _status(exc) == 410
                log.warning("pods on %s: %s (retry %d)", self.node_name, _describe(exc), attempt)
            if attempt:
                stop.wait(backoff_delay(attempt - 1))

    def _watch_seconds(self, listed_at: float) -> int:
        left = self.resync_interval - (time.monotonic() - listed_at)
        return max(1, int(min(self.watch_timeout, left)))

    def _list(self) -> None:
        body = self.api.list_pods(field_selector=self._field_selector, timeout=30)
        labels = self._node_labels()
        with self.lock:
            self.pods, changed = reconcile(self.pods, body.get("items") or [])
            changed = changed or labels != self.node_labels
            self.node_labels = labels
            self.resource_version = _rv_of(body)
        self.stats.lists += 1
        self.synced.set()
        log.info("listed %d pods on node %s at resourceVersion %s", len(self.pods),
                 self.node_name, self.resource_version)
        if changed:
            self.on_change()

    def _node_labels(self) -> dict[str, str]:
        self.stats.node_reads += 1
        try:
            node = self.api.read_node(self.node_name, timeout=30)
        except Exception as exc:  # noqa: BLE001 - labels are extra facts: keep the last ones
            log.warning("cannot read node %s: %s", self.node_name, _describe(exc))
            return dict(self.node_labels)
        return dict((node.get("metadata") or {}).get("labels") or {})

    def _watch(self, stop: threading.Event, *, timeout: int) -> bool:
        """One watch until it ends; True when it ended quickly with nothing (back off)."""
        started, seen = time.monotonic(), 0
        stream = self.api.watch_pods(
            field_selector=self._field_selector, resource_version=self.resource_version,
            timeout_seconds=timeout, allow_bookmarks=True)
        self.stats.watches += 1
        try:
            for event in stream:
                if stop.is_set():
                    break
                seen += 1
                self._handle(event)
        finally:
            stream.close()
        return not seen and time.monotonic() - started < 1.0

    def _handle(self, event: Mapping[str, Any]) -> None:
        etype, obj = event.get("type"), event.get("object") or {}
        if etype == "ERROR":
            if obj.get("code") == 410:
                raise Gone(obj.get("message") or "410 Gone")
            raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
        if etype == "BOOKMARK":
            self.stats.bookmarks += 1
        else:
            self.stats.events += 1
        with self.lock:
            changed = apply_event(self.pods, etype=str(etype), obj=obj)
            self.resource_version = _rv_of(obj) or self.resource_version
        if changed:
            self.on_change()


def _status(exc: BaseException) -> int:
    return int(getattr(exc, "status", 0) or 0)


def _describe(exc: BaseException) -> str:
    if _status(exc):
        # The API's own message says what was refused (who, which verb on what): an
        # operator fixing RBAC needs it. Clipped: it is the server's text, logged as is.
        message = str(getattr(exc, "message", "") or "")[:300]
        return f"HTTP {_status(exc)} {getattr(exc, 'reason', '')}: {message}".strip(": ")
    return f"{type(exc).__name__}: {exc}"
