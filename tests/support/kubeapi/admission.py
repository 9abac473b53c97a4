"""Mutating admission: call MutatingWebhookConfiguration webhooks like the real API server.

Matching (rules, namespaceSelector, objectSelector), AdmissionReview admission.k8s.io/v1
over HTTPS verified with caBundle, base64 JSONPatch responses, failurePolicy,
timeoutSeconds and reinvocationPolicy IfNeeded (one extra round when a later webhook
changed the object).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import ssl
import urllib.parse
import uuid

import jsonpatch

from tests.support.kubeapi import errors, resources, selectors

log = logging.getLogger(__name__)
_MWC = resources.lookup("mutatingwebhookconfigurations")


def rule_matches(rule: dict, *, rt: resources.ResourceType, operation: str) -> bool:
    def has(values, want):
        return "*" in (values or []) or want in (values or [])

    scope = rule.get("scope", "*")
    scope_ok = scope == "*" or (scope == "Namespaced") == rt.namespaced
    return (has(rule.get("operations"), operation) and has(rule.get("apiGroups"), rt.group)
            and has(rule.get("apiVersions"), rt.version)
            and has(rule.get("resources"), rt.plural) and scope_ok)


class Admission:
    def __init__(self, store, *, service_resolver=None):
        self.store = store
        self.service_resolver = service_resolver
        self.calls: list[dict] = []  # (webhook name, uid, allowed) log for tests

    def admit(self, *, operation: str, rt: resources.ResourceType, obj: dict,
              old: dict | None, namespace: str, dry_run: bool) -> dict:
        hooks = self._matching(rt=rt, operation=operation, obj=obj, namespace=namespace)
        if not hooks:
            return obj
        produced: list[tuple[dict, dict]] = []  # (hook, object right after it ran)
        for hook in hooks:
            obj = self._call(hook, rt=rt, operation=operation, obj=obj, old=old,
                             namespace=namespace, dry_run=dry_run)
            produced.append((hook, obj))
        final = obj
        for hook, after in produced:
            # IfNeeded: once more when a later webhook changed what this one produced.
            if hook.get("reinvocationPolicy") == "IfNeeded" and after != final:
                obj = self._call(hook, rt=rt, operation=operation, obj=obj, old=old,
                                 namespace=namespace, dry_run=dry_run)
        return obj

    def _matching(self, *, rt, operation, obj, namespace) -> list[dict]:
        with self.store.lock:
            configs = sorted(self.store._objects[_MWC.key].items())
            ns_obj = self.store._objects["namespaces"].get(("", namespace))
        ns_labels = (ns_obj[0]["metadata"].get("labels") if ns_obj else None) or {}
        out = []
        for _key, (cfg, _raw) in configs:
            for hook in cfg.get("webhooks") or []:
                if not any(rule_matches(r, rt=rt, operation=operation)
                           for r in hook.get("rules") or []):
                    continue
                if rt.namespaced and not selectors.match_label_selector(
                        hook.get("namespaceSelector"), ns_labels):
                    continue
                if not selectors.match_label_selector(
                        hook.get("objectSelector"), obj["metadata"].get("labels")):
                    continue
                out.append({**hook, "_config": cfg["metadata"]["name"]})
        return out

    def _call(self, hook: dict, *, rt, operation, obj, old, namespace, dry_run) -> dict:
        uid = str(uuid.uuid4())
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": uid,
            "kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
            "resource": {"group": rt.group, "version": rt.version, "resource": rt.plural},
            "requestKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
            "requestResource": {"group": rt.group, "version": rt.version, "resource": rt.plural},
            "name": obj["metadata"].get("name", ""), "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "kubeapi-fixture", "groups": ["system:masters"]},
            "object": obj, "oldObject": old, "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1",
                        "kind": "CreateOptions" if operation == "CREATE" else "UpdateOptions"},
        }}
        try:
            response = self._post(hook, review)
            result = _check_response(response, uid)
        except (OSError, ValueError, ssl.SSLError, http.client.HTTPException, KeyError) as exc:
            self.calls.append({"webhook": hook.get("name"), "uid": uid, "error": str(exc)})
            if hook.get("failurePolicy", "Fail") == "Ignore":
                log.warning("webhook %s failed, ignored: %s", hook.get("name"), exc)
                return obj
            raise errors.ApiError(500, f'Internal error occurred: failed calling webhook '
                                  f'"{hook.get("name")}": {exc}', reason="InternalError") from None
        self.calls.append({"webhook": hook.get("name"), "uid": uid,
                           "allowed": result.get("allowed"),
                           "warnings": list(result.get("warnings") or [])})
        if not result.get("allowed"):
            st = result.get("status") or {}
            raise errors.ApiError(int(st.get("code") or 400), f'admission webhook '
                                  f'"{hook.get("name")}" denied the request: '
                                  f'{st.get("message", "")}',
                                  reason=st.get("reason") or "BadRequest")
        return _apply(result, obj, hook)

    def _post(self, hook: dict, review: dict) -> dict:
        cfg = hook.get("clientConfig") or {}
        timeout = float(hook.get("timeoutSeconds") or 10)
        if cfg.get("url"):
            url = urllib.parse.urlsplit(cfg["url"])
            host, port, path = url.hostname, url.port or 443, url.path or "/"
            sni = host
        else:
            svc = cfg.get("service") or {}
            if self.service_resolver is None:
                raise ValueError(f"webhook {hook.get('name')} uses service "
                                 f"{svc.get('namespace')}/{svc.get('name')} and the fixture "
                                 "has no service_resolver")
            base = urllib.parse.urlsplit(self.service_resolver(
                svc.get("namespace"), svc.get("name"), int(svc.get("port") or 443)))
            host, port = base.hostname, base.port or 443
            path = base.path.rstrip("/") + (svc.get("path") or "/")
            sni = f"{svc.get('name')}.{svc.get('namespace')}.svc"
        ctx = ssl.create_default_context()
        if cfg.get("caBundle"):
            ctx = ssl.create_default_context(cadata=base64.b64decode(cfg["caBundle"]).decode())
        raw = socket.create_connection((host, port), timeout=timeout)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.sock = ctx.wrap_socket(raw, server_hostname=sni)
        try:
            body = json.dumps(review).encode()
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise ValueError(f"webhook answered HTTP {resp.status}: {data[:200]!r}")
            return json.loads(data)
        finally:
            conn.close()


def _check_response(doc: dict, uid: str) -> dict:
    if doc.get("apiVersion") != "admission.k8s.io/v1" or doc.get("kind") != "AdmissionReview":
        raise ValueError("the webhook response is not an admission.k8s.io/v1 AdmissionReview")
    result = doc["response"]
    if result.get("uid") != uid:
        raise ValueError(f"expected response.uid={uid!r}, got {result.get('uid')!r}")
    return result


def _apply(result: dict, obj: dict, hook: dict) -> dict:
    if not result.get("patch"):
        return obj
    if result.get("patchType") != "JSONPatch":
        raise errors.ApiError(500, f'webhook "{hook.get("name")}" returned patchType '
                              f'{result.get("patchType")!r}; only JSONPatch is accepted')
    try:
        ops = json.loads(base64.b64decode(result["patch"]))
        return jsonpatch.JsonPatch(ops).apply(obj)
    except (ValueError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException,
            TypeError, KeyError) as exc:
        raise errors.ApiError(500, f'Internal error occurred: webhook "{hook.get("name")}" '
                              f"returned an invalid JSON patch: {exc}") from None
