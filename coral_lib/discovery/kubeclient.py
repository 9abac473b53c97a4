"""A small Kubernetes API client for the DaemonSet agent: list/watch pods, get a node.

Why not the official `kubernetes` package: importing it costs the agent about 33 MB of
RSS (generated models for every API group, urllib3, oauthlib...) against a 50 MB budget,
and the agent needs three GETs. This module uses the standard library only
(http.client + ssl + json); PyYAML is already loaded for the agent's own config.

Credentials come from a kubeconfig (`from_kubeconfig`: current or named context; the
cluster's server, certificate-authority(-data), insecure-skip-tls-verify, tls-server-name;
the user's token, tokenFile or client-certificate(-data) + client-key(-data)) or from the
pod's service account (`in_cluster`). exec and auth-provider plugins, username/password
and proxies are not supported: KubeConfigError says so and names the user.

Errors: ApiError carries the HTTP status (`.status`, 410 for a compacted
resourceVersion), the reason and the API server's message.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import os
import pathlib
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from coral_lib import files

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_REREAD_SECONDS = 60.0  # bound service account tokens rotate; kubelet rewrites the file


class KubeConfigError(Exception):
    """Credentials cannot be built; the message names the file/field and what is accepted."""


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(f"HTTP {status} {reason}: {message}".rstrip(": "))
        self.status, self.reason, self.message = status, reason, message


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to authenticate to it (all PEM as bytes)."""

    server: str
    ca_pem: bytes | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    token: str | None = None
    token_file: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None


# ---- credentials (pure over the parsed kubeconfig) ---------------------------------------

def from_kubeconfig(path: str, *, context: str | None = None) -> Credentials:
    """Credentials from a kubeconfig file; KubeConfigError names what is wrong."""
    import yaml  # only for a kubeconfig: a DaemonSet agent in its pod reads none

    try:
        doc = yaml.safe_load(pathlib.Path(path).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise KubeConfigError(f"kubeconfig {path}: cannot read it: {exc}") from None
    if not isinstance(doc, dict):
        raise KubeConfigError(f"kubeconfig {path}: expected a mapping (kind: Config)")
    return credentials_from(doc, context=context, base_dir=pathlib.Path(path).parent,
                            source=f"kubeconfig {path}")


def credentials_from(doc: Mapping[str, Any], *, context: str | None = None,
                     base_dir: pathlib.Path = pathlib.Path("."),
                     source: str = "kubeconfig") -> Credentials:
    """Credentials from a parsed kubeconfig; relative file paths are taken from base_dir."""
    name = context or doc.get("current-context") or ""
    if not name:
        raise KubeConfigError(f"{source}: no current-context and no context given")
    ctx = _named(doc, "contexts", "context", name, source)
    cluster = _named(doc, "clusters", "cluster", ctx.get("cluster", ""), source)
    user = _named(doc, "users", "user", ctx.get("user", ""), source) if ctx.get("user") else {}
    where = f"{source}, user {ctx.get('user')!r}"
    for unsupported in ("exec", "auth-provider"):
        if user.get(unsupported):
            raise KubeConfigError(
                f"{where}: {unsupported} plugins are not supported by coral agent node; "
                "use a token, tokenFile or client-certificate/client-key "
                "(in a cluster: the pod's service account)")
    if user.get("username") or user.get("password"):
        raise KubeConfigError(f"{where}: basic auth (username/password) is not supported; "
                              "use a token or a client certificate")
    server = str(cluster.get("server") or "")
    if not server.startswith("https://"):
        raise KubeConfigError(f"{source}: cluster {ctx.get('cluster')!r} server {server!r} "
                              "must be an https:// URL")
    cert = _pem(user, "client-certificate", base_dir, source)
    key = _pem(user, "client-key", base_dir, source)
    if bool(cert) != bool(key):
        raise KubeConfigError(f"{where}: client-certificate and client-key go together")
    token_file = user.get("tokenFile")
    return Credentials(
        server=server.rstrip("/"), ca_pem=_pem(cluster, "certificate-authority", base_dir, source),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name") or None,
        token=user.get("token") or None,
        token_file=str(base_dir / token_file) if token_file else None,
        cert_pem=cert, key_pem=key)


def _named(doc: Mapping[str, Any], section: str, field: str, name: str,
           source: str) -> dict:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return dict(entry.get(field) or {})
    known = [e.get("name") for e in doc.get(section) or [] if isinstance(e, dict)]
    raise KubeConfigError(f"{source}: no {field} named {name!r} in {section} (have {known})")


def _pem(section: Mapping[str, Any], field: str, base_dir: pathlib.Path,
         source: str) -> bytes | None:
    """`<field>-data` (base64) or `<field>` (a file path) -> PEM bytes."""
    data = section.get(f"{field}-data")
    try:
        if data:
            return base64.b64decode(data, validate=True)
        if section.get(field):
            return (base_dir / section[field]).read_bytes()
    except (ValueError, OSError) as exc:
        raise KubeConfigError(f"{source}: cannot read {field}: {exc}") from None
    return None


def in_cluster(*, environ: Mapping[str, str] = os.environ, sa_dir: str = SA_DIR) -> Credentials:
    """The pod's service account: KUBERNETES_SERVICE_HOST/PORT, token and ca.crt."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeConfigError("not in a cluster: KUBERNETES_SERVICE_HOST and "
                              "KUBERNETES_SERVICE_PORT are not set (pass --kubeconfig)")
    token_file = pathlib.Path(sa_dir) / "token"
    try:
        ca = (pathlib.Path(sa_dir) / "ca.crt").read_bytes()
        token_file.read_text()
    except OSError as exc:
        raise KubeConfigError(f"in-cluster service account: {exc}") from None
    host = f"[{host}]" if ":" in host else host  # an IPv6 service address
    return Credentials(server=f"https://{host}:{port}", ca_pem=ca, token_file=str(token_file))


# ---- HTTP edge ----------------------------------------------------------------------------

def ssl_context(creds: Credentials) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=creds.ca_pem.decode() if creds.ca_pem else None)
    if creds.insecure:
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if creds.cert_pem and creds.key_pem:
        # load_cert_chain only reads files: a private temp dir, removed at once.
        with tempfile.TemporaryDirectory(prefix="coral-kube-") as tmp:
            cert, key = pathlib.Path(tmp) / "tls.crt", pathlib.Path(tmp) / "tls.key"
            files.write_atomic(cert, creds.cert_pem, mode=0o600)
            files.write_atomic(key, creds.key_pem, mode=0o600)
            try:
                ctx.load_cert_chain(str(cert), str(key))
            except ssl.SSLError as exc:
                raise KubeConfigError(f"client certificate/key: {exc}") from None
    return ctx


class Watch:
    """A streaming watch response: iterate for event dicts; close() ends it."""

    def __init__(self, conn: http.client.HTTPSConnection,
                 resp: http.client.HTTPResponse) -> None:
        self._conn, self._resp = conn, resp

    def __iter__(self) -> Iterator[dict]:
        while True:
            line = self._resp.readline()
            if not line:
                return
            if line.strip():
                yield json.loads(line)

    def close(self) -> None:
        self._conn.close()


class Client:
    """Requests to one API server (GETs, watches, a TokenReview POST). Thread-safe: every
    request has its own connection (requests are rare: a list per resync, a watch per few
    minutes, a review per agent bootstrap)."""

    def __init__(self, creds: Credentials, *, connect_timeout: float = 10.0) -> None:
        self.creds = creds
        url = urllib.parse.urlsplit(creds.server)
        self._host, self._port = url.hostname or "", url.port or 443
        self._prefix = url.path.rstrip("/")
        self._ssl = ssl_context(creds)
        self._connect_timeout = connect_timeout
        self._token_lock = threading.Lock()
        self._token, self._token_read = creds.token or "", 0.0

    def list_pods(self, *, namespace: str | None = None, field_selector: str = "",
                  label_selector: str = "", resource_version: str = "",
                  timeout: float = 30.0) -> dict:
        """A PodList as a dict (items stay plain dicts)."""
        return self.get_json(_pods_path(namespace), timeout=timeout, query={
            "fieldSelector": field_selector, "labelSelector": label_selector,
            "resourceVersion": resource_version})

    def watch_pods(self, *, namespace: str | None = None, field_selector: str = "",
                   label_selector: str = "", resource_version: str = "",
                   timeout_seconds: int = 300, allow_bookmarks: bool = True) -> Watch:
        """Open a watch; the server ends it after timeout_seconds (the socket waits 30 s
        more before calling the connection dead)."""
        query = {"watch": "true", "fieldSelector": field_selector,
                 "labelSelector": label_selector, "resourceVersion": resource_version,
                 "timeoutSeconds": str(int(timeout_seconds)),
                 "allowWatchBookmarks": "true" if allow_bookmarks else ""}
        conn, resp = self._open(_pods_path(namespace), query=query,
                                read_timeout=timeout_seconds + 30)
        return Watch(conn, resp)

    def read_node(self, name: str, *, timeout: float = 30.0) -> dict:
        return self.get_json(f"/api/v1/nodes/{urllib.parse.quote(name, safe='')}",
                             timeout=timeout)

    def get_json(self, path: str, *, query: Mapping[str, str] | None = None,
                 timeout: float = 30.0) -> dict:
        conn, resp = self._open(path, query=query or {}, read_timeout=timeout)
        try:
            return json.loads(resp.read())
        finally:
            conn.close()

    def post_json(self, path: str, body: Mapping[str, Any], *, timeout: float = 30.0) -> dict:
        """POST a JSON object (e.g. a TokenReview); the decoded answer, or ApiError."""
        conn, resp = self._open(path, query={}, read_timeout=timeout, method="POST",
                                body=json.dumps(body).encode())
        try:
            return json.loads(resp.read())
        finally:
            conn.close()

    def _open(self, path: str, *, query: Mapping[str, str], read_timeout: float,
              method: str = "GET", body: bytes | None = None
              ) -> tuple[http.client.HTTPSConnection, http.client.HTTPResponse]:
        target = self._prefix + path
        params = urllib.parse.urlencode({k: v for k, v in query.items() if v})
        conn = http.client.HTTPSConnection(
            self._host, self._port, timeout=self._connect_timeout, context=self._ssl)
        try:
            if self.creds.tls_server_name:
                raw = socket.create_connection((self._host, self._port),
                                               timeout=self._connect_timeout)
                conn.sock = self._ssl.wrap_socket(raw,
                                                  server_hostname=self.creds.tls_server_name)
            else:
                conn.connect()
            conn.sock.settimeout(read_timeout)
            headers = self._headers()
            if body is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, f"{target}?{params}" if params else target, body=body,
                         headers=headers)
            resp = conn.getresponse()
            if resp.status >= 300:
                raise _api_error(resp.status, resp.reason, resp.read())
        except BaseException:
            conn.close()
            raise
        return conn, resp

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "coral-agent"}
        token = self._current_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _current_token(self) -> str:
        if not self.creds.token_file:
            return self._token
        with self._token_lock:
            if time.monotonic() - self._token_read >= TOKEN_REREAD_SECONDS or not self._token:
                try:
                    self._token = pathlib.Path(self.creds.token_file).read_text().strip()
                    self._token_read = time.monotonic()
                except OSError:
                    pass  # keep the last token; the server will say 401 if it is stale
            return self._token


def _pods_path(namespace: str | None) -> str:
    if namespace:
        return f"/api/v1/namespaces/{urllib.parse.quote(namespace, safe='')}/pods"
    return "/api/v1/pods"


def _api_error(status: int, reason: str, body: bytes) -> ApiError:
    """The Status object's reason/message when the body is one, else the raw text."""
    try:
        doc = json.loads(body)
    except ValueError:
        return ApiError(status, reason, body[:200].decode(errors="replace").strip())
    if isinstance(doc, dict):
        return ApiError(status, str(doc.get("reason") or reason), str(doc.get("message") or ""))
    return ApiError(status, reason, "")
