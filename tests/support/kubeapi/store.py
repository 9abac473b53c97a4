"""The object store: one global resourceVersion counter, a bounded event history and watchers.

Objects are stored as (dict, JSON bytes) and never mutated after a write, so readers share
them without copying and responses reuse the bytes. The public methods (`create`, `get`,
`list`, `update`, `patch`, `delete`) take and return plain dicts and skip HTTP, for tests
and churn drivers that need speed; the HTTP handler calls the same code.
"""

from __future__ import annotations

import base64
import collections
import json
import re
import threading
import uuid
from collections.abc import Callable

from tests.support.kubeapi import (
    controller,
    errors,
    objects,
    patches,
    podsecurity,
    resources,
    selectors,
    serviceaccounts,
)
from tests.support.kubeapi import watch as watch_

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
Admit = Callable[..., dict]


def dumps(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _rt_of(resource: str | resources.ResourceType) -> resources.ResourceType:
    return resource if isinstance(resource, resources.ResourceType) else resources.lookup(resource)


class Store:
    def __init__(self, *, history_size: int = 10_000, start_rv: int = 1000):
        self.lock = threading.RLock()
        self.rv = start_rv
        self.history_size = history_size
        self.compacted_rv = start_rv  # watches from an RV below this get 410 Gone
        self._history: collections.deque[watch_.Event] = collections.deque()
        self._objects: dict[str, dict[tuple[str, str], tuple[dict, bytes]]] = {
            t.key: {} for t in resources.TYPES}
        self._watchers: dict[str, set[watch_.Watcher]] = {t.key: set() for t in resources.TYPES}
        self._applied: dict[tuple, dict] = {}  # (key, ns, name, manager) -> applied config
        self.admit: Admit | None = None  # set by the server: mutating admission
        self.service_accounts = False  # ServiceAccount admission (serviceaccounts.py)
        self.controller = controller.Controller(self)
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # ---- public dict API -------------------------------------------------------------
    def create(self, obj: dict, *, namespace: str | None = None, dry_run: bool = False,
               field_manager: str | None = None) -> dict:
        rt = self._rt_for_body(obj)
        ns = namespace or (obj.get("metadata") or {}).get("namespace") or "default"
        return json.loads(self.create_raw(rt, ns if rt.namespaced else "", obj,
                                          dry_run=dry_run, field_manager=field_manager)[1])

    def get(self, resource: str, name: str, *, namespace: str | None = None) -> dict:
        rt = _rt_of(resource)
        return json.loads(self.get_raw(rt, self._ns(rt, namespace), name)[1])

    def list(self, resource: str, *, namespace: str | None = None,
             label_selector: str | None = None, field_selector: str | None = None) -> list[dict]:
        rt = _rt_of(resource)
        pred = selectors.both(selectors.parse_label_selector(label_selector),
                              selectors.parse_field_selector(field_selector))
        items, _rv, _token = self.list_raw(rt, namespace=namespace, pred=pred)
        return [json.loads(raw) for _o, raw in items]

    def update(self, obj: dict, *, subresource: str | None = None) -> dict:
        rt = self._rt_for_body(obj)
        meta = obj.get("metadata") or {}
        ns = self._ns(rt, meta.get("namespace"))
        return json.loads(self.update_raw(rt, ns, meta.get("name", ""), obj,
                                          subresource=subresource)[1])

    def patch(self, resource: str, name: str, body: object, *, namespace: str | None = None,
              patch_type: str = "merge", field_manager: str | None = None,
              subresource: str | None = None) -> dict:
        rt = _rt_of(resource)
        return json.loads(self.patch_raw(rt, self._ns(rt, namespace), name, body,
                                         patch_type=patch_type, field_manager=field_manager,
                                         subresource=subresource)[1])

    def delete(self, resource: str, name: str, *, namespace: str | None = None) -> dict:
        rt = _rt_of(resource)
        return self.delete_obj(rt, self._ns(rt, namespace), name)

    def compact(self) -> int:
        """Drop all watch history: a watch from any earlier resourceVersion gets 410 Gone."""
        with self.lock:
            self._history.clear()
            self.compacted_rv = self.rv
            return self.rv

    def drop_watches(self) -> int:
        with self.lock:
            ws = [w for group in self._watchers.values() for w in group]
        for w in ws:
            w.drop()
        return len(ws)

    def watcher_count(self) -> int:
        with self.lock:
            return sum(len(g) for g in self._watchers.values())

    # ---- raw layer used by the HTTP handler ------------------------------------------
    def _ns(self, rt: resources.ResourceType, namespace: str | None) -> str:
        return (namespace or "default") if rt.namespaced else ""

    def _rt_for_body(self, obj: object) -> resources.ResourceType:
        if not isinstance(obj, dict):
            raise errors.bad_request("object must be a JSON object")
        rt = resources.by_kind(str(obj.get("apiVersion")), str(obj.get("kind")))
        if rt is None:
            raise errors.bad_request(
                f"no kind {obj.get('kind')!r} in apiVersion {obj.get('apiVersion')!r} is served")
        return rt

    def get_raw(self, rt: resources.ResourceType, ns: str, name: str) -> tuple[dict, bytes]:
        with self.lock:
            found = self._objects[rt.key].get((ns, name))
        if found is None:
            raise errors.not_found(rt.plural, name, rt.group)
        return found

    def list_raw(self, rt: resources.ResourceType, *, namespace: str | None,
                 pred: selectors.Predicate | None, limit: int = 0,
                 continue_token: str | None = None) -> tuple[list[tuple[dict, bytes]], int, str]:
        start = self._decode_continue(continue_token) if continue_token else None
        with self.lock:
            rv = self.rv
            entries = sorted(self._objects[rt.key].items())
        out = []
        for (ns, name), entry in entries:
            if namespace and ns != namespace or (start is not None and (ns, name) <= start):
                continue
            if pred is None or pred(entry[0]):
                out.append(entry)
                if limit and len(out) > limit:
                    break
        token = ""
        if limit and len(out) > limit:
            out = out[:limit]
            last = out[-1][0]["metadata"]
            token = self._encode_continue(rv, (last.get("namespace", ""), last["name"]))
        return out, rv, token

    def _encode_continue(self, rv: int, key: tuple[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps({"rv": rv, "start": key}).encode()).decode()

    def _decode_continue(self, token: str) -> tuple[str, str]:
        try:
            doc = json.loads(base64.urlsafe_b64decode(token.encode()))
            rv, start = int(doc["rv"]), tuple(doc["start"])
        except (ValueError, KeyError, TypeError) as exc:
            raise errors.bad_request(f"invalid continue token {token!r}: {exc}") from None
        if rv < self.compacted_rv:
            raise errors.gone(
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter, or use the "
                "continue value from the response to get a consistent list.")
        return start

    def create_raw(self, rt: resources.ResourceType, ns: str, body: object, *,
                   dry_run: bool = False, field_manager: str | None = None) -> tuple[dict, bytes]:
        obj = objects.prepare_create(rt, ns, body, field_manager=field_manager)
        if rt.namespaced:
            self._require_namespace(ns)
        if rt.plural == "pods" and self.service_accounts:
            serviceaccounts.admit_pod(self, ns, obj)  # built-in plugins run before webhooks
        if self.admit is not None:
            obj = self.admit(operation="CREATE", rt=rt, obj=obj, old=None, namespace=ns,
                             dry_run=dry_run)
            objects.apply_defaults(rt, obj)
        if rt.plural == "pods":
            podsecurity.enforce(self, ns, obj)  # validating admission runs after mutating
        objects.validate(rt, obj)
        with self.lock:
            meta = obj["metadata"]
            if not meta.get("name"):
                meta["name"] = self._generate_name(rt, ns, meta["generateName"])
            if (ns, meta["name"]) in self._objects[rt.key]:
                raise errors.already_exists(rt.plural, meta["name"], rt.group)
            meta["uid"] = str(uuid.uuid4())
            self.controller.before_create(rt, obj)
            if dry_run:
                return obj, dumps(obj)
            return self._commit(rt, ns, obj, "ADDED", None)

    def _require_namespace(self, ns: str) -> None:
        with self.lock:
            if ("", ns) not in self._objects["namespaces"]:
                raise errors.not_found("namespaces", ns)

    def _generate_name(self, rt: resources.ResourceType, ns: str, prefix: str) -> str:
        for _ in range(20):
            name = prefix + uuid.uuid4().hex[:5]
            if (ns, name) not in self._objects[rt.key]:
                return name
        raise errors.ApiError(500, f"could not generate a unique name from {prefix!r}")

    def _commit(self, rt: resources.ResourceType, ns: str, obj: dict, etype: str,
                old: dict | None) -> tuple[dict, bytes]:
        """Store a new version (caller holds the lock): bump RV, record, fan out, react."""
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        raw = dumps(obj)
        key = (ns, obj["metadata"]["name"])
        if etype == "DELETED":
            self._objects[rt.key].pop(key, None)
        else:
            self._objects[rt.key][key] = (obj, raw)
        ev = watch_.Event(self.rv, rt.key, etype, ns, obj, raw, old)
        self._history.append(ev)
        while len(self._history) > self.history_size:
            self.compacted_rv = self._history.popleft().rv
        for w in self._watchers[rt.key]:
            w.offer(ev)
        self.controller.after_commit(rt, ev)
        return obj, raw

    def update_raw(self, rt: resources.ResourceType, ns: str, name: str, body: object, *,
                   subresource: str | None = None, field_manager: str | None = None,
                   dry_run: bool = False) -> tuple[dict, bytes]:
        if not isinstance(body, dict):
            raise errors.bad_request("update body must be a JSON object")
        objects.check_identity(rt, ns, name, body)
        want_rv = (body.get("metadata") or {}).get("resourceVersion")

        def mutate(current: dict) -> dict:
            if want_rv and want_rv != current["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.plural, name, rt.group)
            return body

        return self._write(rt, ns, name, mutate, subresource=subresource,
                           field_manager=field_manager, operation="Update", dry_run=dry_run)

    def patch_raw(self, rt: resources.ResourceType, ns: str, name: str, body: object, *,
                  patch_type: str, field_manager: str | None = None, force: bool = False,
                  subresource: str | None = None, dry_run: bool = False) -> tuple[dict, bytes]:
        if patch_type == "apply":
            return self._apply(rt, ns, name, body, field_manager=field_manager, dry_run=dry_run)
        fn = {"merge": patches.merge_patch, "strategic": patches.strategic_merge,
              "json": patches.json_patch}.get(patch_type)
        if fn is None:
            raise errors.ApiError(415, f"unsupported patch type {patch_type!r}; accepted: "
                                  "merge, strategic, json, apply")
        if patch_type != "json" and not isinstance(body, dict):
            raise errors.bad_request(f"{patch_type} patch body must be a JSON object")

        def mutate(current: dict) -> dict:
            out = fn(json.loads(dumps(current)), body)
            if not isinstance(out, dict):
                raise errors.ApiError(422, "the patch did not produce an object")
            return out

        return self._write(rt, ns, name, mutate, subresource=subresource,
                           field_manager=field_manager, operation="Update", dry_run=dry_run)

    def _apply(self, rt, ns, name, body, *, field_manager, dry_run) -> tuple[dict, bytes]:
        if not field_manager:
            raise errors.ApiError(422, "PatchOptions.meta.k8s.io is invalid: fieldManager: "
                                  "Required value: is required for apply patch")
        if not isinstance(body, dict):
            raise errors.bad_request("apply patch body must be a YAML or JSON object")
        objects.check_identity(rt, ns, name, body)
        akey = (rt.key, ns, name, field_manager)
        with self.lock:
            exists = (ns, name) in self._objects[rt.key]
        if not exists:
            out = self.create_raw(rt, ns, body, dry_run=dry_run, field_manager=field_manager)
            if not dry_run:
                self._applied[akey] = body
            return out
        previous = self._applied.get(akey)

        def mutate(current: dict) -> dict:
            return patches.apply_patch(json.loads(dumps(current)), body, previous)

        out = self._write(rt, ns, name, mutate, subresource=None, field_manager=field_manager,
                          operation="Apply", dry_run=dry_run)
        if not dry_run:
            self._applied[akey] = body
        return out

    def _write(self, rt, ns, name, mutate, *, subresource, field_manager, operation,
               dry_run) -> tuple[dict, bytes]:
        """Read-modify-write with optimistic retry, admission outside the lock."""
        for _attempt in range(10):
            current, _raw = self.get_raw(rt, ns, name)
            candidate = objects.merge_update(rt, current, mutate(current),
                                             subresource=subresource)
            if self.admit is not None and subresource is None:
                candidate = self.admit(operation="UPDATE", rt=rt, obj=candidate, old=current,
                                       namespace=ns, dry_run=dry_run)
                objects.apply_defaults(rt, candidate)
            objects.validate(rt, candidate)
            with self.lock:
                latest = self._objects[rt.key].get((ns, name))
                if latest is None:
                    raise errors.not_found(rt.plural, name, rt.group)
                if latest[0] is not current:
                    continue
                if objects.same(current, candidate):
                    return latest  # a no-op write changes nothing, not even resourceVersion
                objects.finish_update(rt, current, candidate, field_manager=field_manager,
                                      operation=operation)
                self.controller.before_update(rt, candidate, current)
                if dry_run:
                    return candidate, dumps(candidate)
                return self._commit(rt, ns, candidate, "MODIFIED", current)
        raise errors.conflict(rt.plural, name, rt.group)

    def delete_obj(self, rt: resources.ResourceType, ns: str, name: str, *,
                   preconditions: dict | None = None, propagation: str | None = None,
                   dry_run: bool = False) -> dict:
        with self.lock:
            current, _raw = self.get_raw(rt, ns, name)
            objects.check_preconditions(rt, current, preconditions or {})
            gone = objects.deleted_copy(current)
            if dry_run:
                return gone
            if rt.plural == "namespaces":
                self._delete_namespace_content(name)
            if propagation != "Orphan":
                self._delete_dependents(current)
            self._commit(rt, ns, gone, "DELETED", current)
            for akey in [k for k in self._applied if k[:3] == (rt.key, ns, name)]:
                del self._applied[akey]
        if rt.plural in ("pods", "namespaces"):
            return gone
        return errors.success_doc({"name": name, "group": rt.group, "kind": rt.plural,
                                   "uid": current["metadata"]["uid"]})

    def _delete_namespace_content(self, ns: str) -> None:
        for t in resources.TYPES:
            if t.namespaced:
                for (ons, oname) in [k for k in self._objects[t.key] if k[0] == ns]:
                    self.delete_obj(t, ons, oname, propagation="Orphan")

    def _delete_dependents(self, owner: dict) -> None:
        uid = owner["metadata"]["uid"]
        if owner.get("kind") not in controller.OWNER_KINDS:
            return
        ns = owner["metadata"].get("namespace", "")
        for t in controller.OWNED_TYPES:
            for (ons, oname), (obj, _raw) in list(self._objects[t.key].items()):
                refs = obj["metadata"].get("ownerReferences") or []
                if ons == ns and any(r.get("uid") == uid for r in refs):
                    self.delete_obj(t, ons, oname)

    # ---- watch -------------------------------------------------------------------------
    def open_watch(self, rt: resources.ResourceType, *, namespace: str | None,
                   pred: selectors.Predicate | None, resource_version: str | None,
                   send_initial_events: bool = False) -> watch_.Watcher:
        """A watcher fed from `resource_version` on (or from the current state when none).
        send_initial_events (the WatchList protocol kubectl >= 1.35 uses): the current
        state as ADDED events, then the `k8s.io/initial-events-end` bookmark."""
        w = watch_.Watcher(key=rt.key, namespace=namespace, pred=pred)
        with self.lock:
            if send_initial_events or resource_version in (None, "", "0"):
                for (ns, _n), (obj, raw) in self._objects[rt.key].items():
                    if (namespace is None or ns == namespace) and (pred is None or pred(obj)):
                        w.queue.put(watch_.event_line("ADDED", raw))
                if send_initial_events:
                    w.queue.put(watch_.bookmark_line(api_version=rt.api_version, kind=rt.kind,
                                                     rv=self.rv, initial_events_end=True))
            else:
                since = self._parse_rv(resource_version)
                if since < self.compacted_rv:
                    raise errors.gone(f"too old resource version: {since} ({self.compacted_rv})")
                for ev in self._history:
                    if ev.rv > since and ev.key == rt.key:
                        w.offer(ev)
            self._watchers[rt.key].add(w)
        return w

    def close_watch(self, w: watch_.Watcher) -> None:
        with self.lock:
            self._watchers[w.key].discard(w)

    def bookmark_rv(self, w: watch_.Watcher) -> int | None:
        """The RV a bookmark may carry now: only when nothing is queued for the watcher."""
        with self.lock:
            return self.rv if w.queue.empty() else None

    def _parse_rv(self, text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise errors.bad_request(
                f"invalid resourceVersion {text!r}: expected a decimal number") from None
