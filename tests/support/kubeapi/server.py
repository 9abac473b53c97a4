"""KubeAPIServer: the fixture's public face. HTTPS on 127.0.0.1, token auth, kubeconfig.

    with KubeAPIServer(tmp_path) as server:
        subprocess.run([tools.kubectl(), "--kubeconfig", server.kubeconfig_path, "get", "pods"])
        server.store.create({...})          # direct, no HTTP
        server.faults.force_gone()          # fault injection
"""

from __future__ import annotations

import http.server
import pathlib
import secrets
import socket
import ssl
import threading
from collections.abc import Callable

from tests.support.kubeapi import admission, authn, exec_ws, faults, handler, store, tls

ServiceResolver = Callable[[str, str, int], str]


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    ssl_context: ssl.SSLContext

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.open_sockets: set = set()
        self.sockets_lock = threading.Lock()

    def close_all(self) -> None:
        """On stop: end every open connection, idle keep-alive ones included."""
        with self.sockets_lock:
            socks = list(self.open_sockets)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def finish_request(self, request, client_address):
        # TLS handshake in the connection's own thread, never in the accept loop.
        try:
            # headers and body go out in separate writes: without NODELAY, Nagle plus the
            # client's delayed ACK would add ~40 ms to every response.
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request.settimeout(30)
            tls_sock = self.ssl_context.wrap_socket(request, server_side=True)
            tls_sock.settimeout(None)
        except (OSError, ssl.SSLError):
            return
        with self.sockets_lock:
            self.open_sockets.add(request)
        try:
            self.RequestHandlerClass(tls_sock, client_address, self)
        finally:
            with self.sockets_lock:
                self.open_sockets.discard(request)
            try:
                tls_sock.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        pass  # a client dropping its connection is not the fixture's business


class KubeAPIServer:
    """An in-process Kubernetes API server fixture (see the package docstring)."""

    def __init__(self, state_dir: str | pathlib.Path, *, port: int = 0,
                 nodes: tuple[str, ...] | list[str] = ("node-1",), history_size: int = 10_000,
                 bookmark_interval: float = 1.0, watch_timeout: float = 1800.0,
                 context: str = "kubeapi-fixture",
                 service_resolver: ServiceResolver | None = None, auth: str = "token"):
        if auth not in ("token", "client-cert"):
            raise ValueError(f"auth={auth!r}: expected 'token' or 'client-cert'")
        self.auth = auth
        self.state_dir = pathlib.Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.requested_port = port
        self.port = 0
        self.context = context
        # client-cert: TLS demands a certificate signed by the fixture CA; no token.
        self.token = secrets.token_urlsafe(24) if auth == "token" else ""
        self.bookmark_interval = bookmark_interval
        self.watch_timeout = watch_timeout
        self.store = store.Store(history_size=history_size)
        self.faults = faults.Faults(self.store)
        self.tokens = authn.TokenAuthority(self.store)  # TokenRequest/TokenReview, SA auth
        self.exec_handler = exec_ws.local_exec
        self.admission = admission.Admission(self.store, service_resolver=service_resolver)
        self.store.admit = self.admission.admit
        for name in nodes:
            self.add_node(name)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> KubeAPIServer:
        ca_pem, ca_key = tls.make_ca()
        cert, key = tls.issue_cert(ca_pem, ca_key, common_name="kube-apiserver",
                                   dns_names=["localhost", "kubernetes", "kubernetes.default",
                                              "kubernetes.default.svc"],
                                   ip_addresses=["127.0.0.1"])
        self.ca_pem = ca_pem
        for name, data in (("ca.crt", ca_pem), ("ca.key", ca_key), ("server.crt", cert),
                           ("server.key", key)):
            tls.write_private(self.state_dir / name, data)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.state_dir / "server.crt", self.state_dir / "server.key")
        ctx.set_alpn_protocols(["http/1.1"])
        client_cert = None
        if self.auth == "client-cert":
            client_cert = tls.issue_cert(ca_pem, ca_key, common_name="kubeapi-fixture-admin",
                                         dns_names=[], client=True)
            tls.write_private(self.state_dir / "client.crt", client_cert[0])
            tls.write_private(self.state_dir / "client.key", client_cert[1])
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=ca_pem.decode())
        handler_cls = type("BoundHandler", (handler.Handler,), {"app": self})
        httpd = _HTTPServer(("127.0.0.1", self.requested_port), handler_cls,
                            bind_and_activate=False)
        httpd.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        httpd.server_bind()
        httpd.server_activate()
        httpd.ssl_context = ctx
        self._httpd = httpd
        self.port = httpd.server_address[1]
        tls.write_kubeconfig(pathlib.Path(self.kubeconfig_path), tls.kubeconfig(
            url=self.url, ca_pem=ca_pem, token=self.token, context=self.context,
            client_cert=client_cert))
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="kubeapi-fixture", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self.store.drop_watches()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_all()
        self._httpd = None

    def __enter__(self) -> KubeAPIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- facts for clients ----------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig_path(self) -> str:
        return str(self.state_dir / "kubeconfig")

    @property
    def ca_path(self) -> str:
        return str(self.state_dir / "ca.crt")

    @property
    def service_resolver(self) -> ServiceResolver | None:
        return self.admission.service_resolver

    @service_resolver.setter
    def service_resolver(self, fn: ServiceResolver | None) -> None:
        self.admission.service_resolver = fn

    def service_account_kubeconfig(self, namespace: str, name: str, path: str | pathlib.Path,
                                   *, expiration_seconds: int = 3600) -> str:
        """A kubeconfig authenticating as the service account (a token for the API's
        audience, as kubelet projects into a pod), written to `path`; RBAC applies to it."""
        token = self.tokens.request(namespace, name, {"spec": {
            "expirationSeconds": expiration_seconds}})["status"]["token"]
        tls.write_kubeconfig(pathlib.Path(path), tls.kubeconfig(
            url=self.url, ca_pem=self.ca_pem, token=token, context=self.context))
        return str(path)

    def compact(self) -> int:
        return self.store.compact()

    def add_node(self, name: str, *, labels: dict[str, str] | None = None) -> dict:
        """A Ready node (fixture data; nothing runs there)."""
        node_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", **(labels or {})}
        return self.store.create({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": node_labels},
            "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": "True",
                                       "reason": "KubeletReady"}],
                       "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                     {"type": "Hostname", "address": name}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0", "architecture": "amd64",
                                    "operatingSystem": "linux", "bootID": name,
                                    "containerRuntimeVersion": "containerd://1.6.20",
                                    "kernelVersion": "6.1.0", "kubeProxyVersion": "",
                                    "machineID": name, "osImage": "Debian GNU/Linux 12",
                                    "systemUUID": name}},
        })
