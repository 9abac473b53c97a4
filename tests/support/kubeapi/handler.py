"""HTTP request handler: auth, faults, routing, verbs, watch streaming. Never crashes."""

from __future__ import annotations

import http.server
import json
import logging
import ssl
import time
import urllib.parse

import yaml

from tests.support.kubeapi import (
    authn,
    errors,
    exec_ws,
    openapi,
    rbac,
    resources,
    routes,
    selectors,
    table,
    watch_http,
)

log = logging.getLogger(__name__)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply-cbor",
}
_MAX_BODY = 16 * 1024 * 1024


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "coral-kubeapi-fixture"
    app = None  # the KubeAPIServer, set on a subclass by the server

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # ---- plumbing -----------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        self._consumed = False
        try:
            url = urllib.parse.urlsplit(self.path)
            self.query = {k: v[-1] for k, v in urllib.parse.parse_qs(
                url.query, keep_blank_values=True).items()}
            self.query_all = urllib.parse.parse_qs(url.query, keep_blank_values=True)
            self._handle(method, url.path)
        except errors.ApiError as exc:
            self._drain()
            self._send_json(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a fixture bug must show up as a 500, not a dead server
            log.exception("kubeapi fixture: internal error on %s %s", method, self.path)
            self._send_json(500, errors.ApiError(500, f"internal error: {exc!r}").status())

    def _handle(self, method: str, path: str) -> None:
        app = self.app
        self.user = self._authenticate()
        is_watch = self.query.get("watch") in ("1", "true", "True")
        route = routes.parse(path)
        attrs = self._attributes(method, path, route, is_watch)
        if not rbac.allowed(app.store, self.user, attrs):
            raise rbac.forbidden(self.user, attrs)
        code, delay = app.faults.check(method, self.path, is_watch)
        if delay:
            time.sleep(delay)
        if code:
            self._read_body_bytes()
            raise errors.ApiError(code, f"injected fault: HTTP {code}")
        if route is None:
            self._non_resource(method, path)
        else:
            self._resource(method, route, is_watch)

    def _authenticate(self) -> authn.User:
        """The admin token (or, with auth=client-cert, the verified client certificate),
        else a service account token for the API's audience; 401 otherwise."""
        header = self.headers.get("Authorization", "")
        # The scheme is case-insensitive (RFC 7235; kube-apiserver lowercases it): the
        # kubernetes Python client's in-cluster config sends "bearer <token>".
        scheme, _, value = header.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else ""
        if self.app.token and token == self.app.token:
            return authn.ADMIN
        if not self.app.token and not token:
            return authn.ADMIN  # TLS already required a certificate from the fixture CA
        if token:
            try:
                return self.app.tokens.authenticate(token)[0]
            except authn.TokenInvalid:
                pass
        raise errors.ApiError(401, "Unauthorized")

    def _attributes(self, method: str, path: str, route: routes.Route | None,
                    is_watch: bool) -> rbac.Attributes:
        if route is None:
            return rbac.Attributes(verb=method.lower(), path=path)
        verb = rbac.verb_for(method, has_name=route.name is not None, is_watch=is_watch,
                             sub=route.sub)
        resource = f"{route.rt.plural}/{route.sub}" if route.sub else route.rt.plural
        return rbac.Attributes(verb=verb, group=route.rt.group, resource=resource,
                               namespace=route.namespace or "", name=route.name or "")

    def _send_bytes(self, code: int, body: bytes, content_type: str = "application/json"):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, code: int, doc: object) -> None:
        try:
            self._send_bytes(code, json.dumps(doc).encode())
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True

    def _drain(self) -> None:
        """Read an unread request body, so the connection stays in step (and no RST
        swallows the error response)."""
        if not self._consumed:
            try:
                self._read_body_bytes()
            except (errors.ApiError, ValueError, OSError):
                self.close_connection = True

    def _read_body_bytes(self) -> bytes:
        self._consumed = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise errors.bad_request("invalid Content-Length header") from None
        if length > _MAX_BODY:
            raise errors.ApiError(413, f"request body of {length} bytes exceeds {_MAX_BODY}",
                                  reason="RequestEntityTooLarge")
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()
            if len(out) > _MAX_BODY:
                raise errors.ApiError(413, "request body too large")

    def _body(self, *, yaml_ok: bool = False) -> object:
        raw = self._read_body_bytes()
        if not raw.strip():
            raise errors.bad_request("the request body is empty; expected a JSON object")
        ctype = self.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if "protobuf" in ctype or "cbor" in ctype:
            raise errors.ApiError(415, f"the body content type {ctype!r} is not supported; "
                                  "send application/json")
        try:
            if yaml_ok or ctype.endswith("yaml"):
                return yaml.load(raw, Loader=_LOADER)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"the request body is not valid "
                                     f"{'YAML' if yaml_ok else 'JSON'}: {exc}") from None

    # ---- non-resource endpoints ---------------------------------------------------------
    def _non_resource(self, method: str, path: str) -> None:
        path = path.rstrip("/") or "/"
        if method != "GET":
            raise errors.ApiError(405, f"method {method} not allowed on {path}")
        doc = self._discovery(path)
        if doc is None:
            raise errors.ApiError(404, f"the server could not find the requested resource "
                                  f"({path})", reason="NotFound")
        if isinstance(doc, str):
            self._send_bytes(200, doc.encode(), "text/plain; charset=utf-8")
        else:
            self._send_json(200, doc)

    def _discovery(self, path: str) -> object:
        parts = path.strip("/").split("/")
        if path in ("/healthz", "/readyz", "/livez"):
            return "ok"
        if path == "/version":
            return resources.VERSION
        if path == "/api":
            return resources.api_versions(f"127.0.0.1:{self.app.port}")
        if path == "/apis":
            return resources.api_group_list()
        if path == "/api/v1":
            return resources.api_resource_list("", "v1")
        if parts[0] == "apis" and len(parts) == 2:
            return resources.api_group(parts[1])
        if parts[0] == "apis" and len(parts) == 3:
            return resources.api_resource_list(parts[1], parts[2])
        if path == "/openapi/v3":
            return openapi.index()
        if path.startswith("/openapi/v3/"):
            return openapi.group_version(path[len("/openapi/v3/"):])
        if path == "/":
            return {"paths": ["/api", "/api/v1", "/apis", "/healthz", "/version"]}
        return None

    # ---- resources ---------------------------------------------------------------------
    def _resource(self, method: str, route: routes.Route, is_watch: bool) -> None:
        store, rt, q = self.app.store, route.rt, self.query
        ns = route.namespace or ""
        dry = q.get("dryRun") == "All"
        fm = q.get("fieldManager") or None
        if route.sub == "exec":
            if method not in ("GET", "POST"):
                raise errors.ApiError(405, "pods/exec accepts GET or POST with a WebSocket "
                                      "upgrade")
            pod, _raw = store.get_raw(rt, ns, route.name)
            exec_ws.serve(self, pod=pod, app=self.app)
            return
        if route.sub == "token" or rt.plural == "tokenreviews":
            self._token_api(method, route)
            return
        if route.name is None:
            self._collection(method, route, is_watch, dry=dry, fm=fm)
            return
        if method == "GET":
            obj, raw = store.get_raw(rt, ns, route.name)
            if self._table_mode():
                self._send_json(200, table.table(rt.plural, [obj], rv=str(store.rv),
                                                 include=self._include()))
            else:
                self._send_bytes(200, raw)
        elif method == "PUT":
            obj, raw = store.update_raw(rt, ns, route.name, self._body(),
                                        subresource=route.sub, field_manager=fm, dry_run=dry)
            self._send_bytes(200, raw)
        elif method == "PATCH":
            self._patch(route, dry=dry, fm=fm)
        elif method == "DELETE":
            body = self._read_body_bytes()
            opts = self._delete_options(body)
            doc = store.delete_obj(rt, ns, route.name, preconditions=opts.get("preconditions"),
                                   propagation=opts.get("propagationPolicy")
                                   or q.get("propagationPolicy"), dry_run=dry)
            self._send_json(200, doc)
        else:
            raise errors.ApiError(405, f"method {method} not allowed on a {rt.kind}")

    def _token_api(self, method: str, route: routes.Route) -> None:
        """TokenRequest (POST serviceaccounts/<name>/token) and TokenReview (POST
        tokenreviews): create-only, nothing stored."""
        if method != "POST" or (route.rt.plural == "tokenreviews" and route.name):
            raise errors.ApiError(405, f"method {method} not allowed on {route.rt.plural}"
                                  f"{'/' + route.sub if route.sub else ''}; only create (POST)")
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        if route.sub == "token" and ctype == "application/vnd.kubernetes.protobuf":
            body = authn.token_request_from_protobuf(self._read_body_bytes())
        else:
            body = self._body()
        if route.sub == "token":
            doc = self.app.tokens.request(route.namespace or "", route.name, body)
        else:
            doc = self.app.tokens.review(body)
        self._send_json(201, doc)

    def _delete_options(self, body: bytes) -> dict:
        if not body.strip():
            return {}
        try:
            opts = json.loads(body)
        except ValueError as exc:
            raise errors.bad_request(f"DeleteOptions body is not valid JSON: {exc}") from None
        if not isinstance(opts, dict):
            raise errors.bad_request("DeleteOptions body must be a JSON object")
        return opts

    def _patch(self, route: routes.Route, *, dry: bool, fm: str | None) -> None:
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        ptype = _PATCH_TYPES.get(ctype)
        if ptype is None or ptype == "apply-cbor":
            raise errors.ApiError(415, f"the body of the request was in an unknown format "
                                  f"{ctype!r}; accepted: {', '.join(list(_PATCH_TYPES)[:4])}")
        body = self._body(yaml_ok=ptype == "apply")
        force = self.query.get("force") in ("true", "1")
        _obj, raw = self.app.store.patch_raw(
            route.rt, route.namespace or "", route.name, body, patch_type=ptype,
            field_manager=fm, force=force, subresource=route.sub, dry_run=dry)
        self._send_bytes(200, raw)

    def _collection(self, method, route, is_watch, *, dry, fm) -> None:
        store, rt = self.app.store, route.rt
        if method == "POST":
            if not rt.namespaced and route.namespace:
                raise errors.ApiError(404, f"{rt.plural} is not namespaced")
            _obj, raw = store.create_raw(rt, route.namespace or "", self._body(),
                                         dry_run=dry, field_manager=fm)
            self._send_bytes(201, raw)
            return
        pred = selectors.both(selectors.parse_label_selector(self.query.get("labelSelector")),
                              selectors.parse_field_selector(self.query.get("fieldSelector")))
        if method == "GET" and is_watch:
            watch_http.serve(self, route, pred)
        elif method == "GET":
            self._list(route, pred)
        elif method == "DELETE":
            self._read_body_bytes()
            items, _rv, _t = store.list_raw(rt, namespace=route.namespace, pred=pred)
            for obj, _raw in items:
                meta = obj["metadata"]
                store.delete_obj(rt, meta.get("namespace", ""), meta["name"], dry_run=dry)
            self._send_json(200, errors.success_doc())
        else:
            raise errors.ApiError(405, f"method {method} not allowed on a {rt.kind} list")

    def _list(self, route: routes.Route, pred) -> None:
        try:
            limit = int(self.query.get("limit") or 0)
        except ValueError:
            raise errors.bad_request(f"invalid limit {self.query.get('limit')!r}") from None
        items, rv, token = self.app.store.list_raw(
            route.rt, namespace=route.namespace, pred=pred, limit=max(limit, 0),
            continue_token=self.query.get("continue") or None)
        if self._table_mode():
            doc = table.table(route.rt.plural, [o for o, _r in items], rv=str(rv),
                              include=self._include())
            if token:
                doc["metadata"]["continue"] = token
            self._send_json(200, doc)
            return
        meta = f'"resourceVersion":"{rv}"'
        if token:
            meta += f',"continue":"{token}"'
        head = (f'{{"kind":"{route.rt.kind}List","apiVersion":"{route.rt.api_version}",'
                f'"metadata":{{{meta}}},"items":[').encode()
        self._send_bytes(200, head + b",".join(raw for _o, raw in items) + b"]}")

    def _table_mode(self) -> bool:
        return table.wants_table(self.headers.get("Accept", ""))

    def _include(self) -> str:
        return self.query.get("includeObject") or "Metadata"
