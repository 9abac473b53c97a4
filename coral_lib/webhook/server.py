"""The HTTPS edge of the webhook: POST /mutate, GET /healthz, GET /metrics.

Stdlib ThreadingHTTPServer with blocking ssl sockets and HTTP/1.1 keep-alive (measured
in bench/bench_webhook.py; asyncio's ssl transport was not needed for the targets).
The TLS handshake runs in the connection's thread, so a slow client never stalls accept.
A rotated certificate is picked up by the next connection: the cert/key files' mtimes
are checked on accept and the SSLContext is rebuilt when they change.
"""

from __future__ import annotations

import bisect
import http.server
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from coral_lib import logs
from coral_lib.webhook import review
from coral_lib.webhook import settings as settings_mod

MAX_BODY = 3 * 1024 * 1024  # the API server's own request size limit
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
RESULTS = ("injected", "skipped", "ignored", "warning", "bad_request")
log = logging.getLogger(__name__)
NamespaceLabels = Mapping[str, Mapping[str, str]] | Callable[[str], Mapping[str, str]]


class Metrics:
    """Request counts by result and a latency histogram, in Prometheus text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(RESULTS, 0)
        self._buckets = [0] * (len(BUCKETS) + 1)
        self._sum = 0.0

    def observe(self, result: str, seconds: float) -> None:
        with self._lock:
            self.counts[result] += 1
            self._buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sum += seconds

    def render(self) -> str:
        with self._lock:
            counts, buckets, total = dict(self.counts), list(self._buckets), self._sum
        name = "coral_webhook_request_duration_seconds"
        lines = [
            "# HELP coral_webhook_requests_total Admission requests by result.",
            "# TYPE coral_webhook_requests_total counter",
            *(f'coral_webhook_requests_total{{result="{r}"}} {n}' for r, n in counts.items()),
            f"# HELP {name} Time to answer one admission request.",
            f"# TYPE {name} histogram",
        ]
        running = 0
        for bound, count in zip((*BUCKETS, "+Inf"), buckets, strict=True):
            running += count
            lines.append(f'{name}_bucket{{le="{bound}"}} {running}')
        lines += [f"{name}_sum {total:.6f}", f"{name}_count {running}"]
        return "\n".join(lines) + "\n"


class CertReloader:
    """An SSLContext for the cert/key files, rebuilt when either file changes."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self._stamp = self._current_stamp()
        self._context = self._build()
        self._failed_stamp: tuple[int, ...] | None = None

    def context(self) -> ssl.SSLContext:
        stamp = self._current_stamp()
        if stamp != self._stamp and stamp != self._failed_stamp:
            try:
                self._context, self._stamp = self._build(), stamp
                log.info("reloaded TLS certificate from %s", self.cert_file)
            except (OSError, ssl.SSLError, ValueError) as exc:
                # A half-written rotation: keep serving the old pair, retry on next change.
                self._failed_stamp = stamp
                log.warning("keeping old certificate, cannot load %s: %s", self.cert_file, exc)
        return self._context

    def _current_stamp(self) -> tuple[int, ...]:
        try:
            a, b = os.stat(self.cert_file), os.stat(self.key_file)
        except OSError:
            return (-1,)
        return (a.st_mtime_ns, a.st_size, b.st_mtime_ns, b.st_size)

    def _build(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


class WebhookServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    handshake_timeout = 10.0

    def __init__(
        self,
        address: tuple[str, int],
        *,
        certs: CertReloader,
        settings: settings_mod.InjectSettings,
        labels_lookup: review.LabelsLookup,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.certs, self.settings, self.labels_lookup = certs, settings, labels_lookup
        self.metrics = Metrics()
        super().__init__(address, Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = self.certs.context()
        return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(self.handshake_timeout)
            request.do_handshake()
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    server: WebhookServer

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, b"ok\n", "text/plain")
        elif self.path == "/metrics":
            self._reply(200, self.server.metrics.render().encode(), "text/plain; version=0.0.4")
        else:
            self._reply(404, b"not found: use POST /mutate, GET /healthz or /metrics\n")

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/mutate":
            self._reply(404, b"not found: admission reviews go to POST /mutate\n")
            return
        started = time.perf_counter()
        status, body, result = self._mutate()
        self.server.metrics.observe(result, time.perf_counter() - started)
        self._reply(status, body, "application/json" if status == 200 else "text/plain")

    def _mutate(self) -> tuple[int, bytes, str]:
        length = self.headers.get("Content-Length", "")
        if self.headers.get("Transfer-Encoding") or not length.isdigit():
            self.close_connection = True
            return 400, b"bad request: a Content-Length header is required\n", "bad_request"
        if int(length) > MAX_BODY:
            self.close_connection = True
            return 413, f"request body over {MAX_BODY} bytes\n".encode(), "bad_request"
        try:
            decoded = review.decode(self.rfile.read(int(length)))
        except review.MalformedReview as exc:
            return 400, f"bad request: {exc}\n".encode(), "bad_request"
        answer, result = review.respond(
            decoded, settings=self.server.settings, labels_lookup=self.server.labels_lookup
        )
        log.log(logging.INFO if result in ("injected", "warning") else logging.DEBUG,
                "admission review %s", result, extra=logs.fields(
                    op_id=decoded["request"]["uid"][:100], target=review.subject(decoded),
                    outcome=result))
        return 200, review.encode(answer), result

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        # One write for head and body: no Nagle/delayed-ACK stall on keep-alive connections.
        head = (
            f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if self.close_connection else "")
            + "\r\n"
        )
        self.wfile.write(head.encode("latin-1") + body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)


class KubernetesNamespaceLabels:
    """Namespace labels from the Kubernetes API, cached for `ttl` seconds so a burst of
    pod creations costs one API call. Config: `kubeconfig` when given, else in-cluster,
    else the default kubeconfig. The client's global configuration is left alone."""

    def __init__(self, *, ttl: float = 10.0, kubeconfig: str | None = None) -> None:
        self.ttl, self.kubeconfig = ttl, kubeconfig
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}
        self._lock = threading.Lock()
        self._api: Any = None

    def __call__(self, name: str) -> Mapping[str, str]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(name)
        if hit and hit[0] > now:
            return hit[1]
        labels = self._fetch(name)
        with self._lock:
            self._cache[name] = (now + self.ttl, labels)
        return labels

    def _fetch(self, name: str) -> dict[str, str]:
        from kubernetes import client  # imported on first use: offline runs never need it

        if self._api is None:
            self._api = client.CoreV1Api(self._api_client())
        try:
            namespace = self._api.read_namespace(name, _request_timeout=2)
        except client.ApiException as exc:
            if exc.status == 404:
                return {}
            raise
        return dict(namespace.metadata.labels or {})

    def _api_client(self) -> Any:
        from kubernetes import client, config

        if self.kubeconfig is None:
            try:
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)
                return client.ApiClient(configuration)
            except config.ConfigException:
                pass
        return config.new_client_from_config(config_file=self.kubeconfig)


def labels_lookup(source: NamespaceLabels | None) -> review.LabelsLookup:
    """A dict of namespace -> labels (tests, static files), a callable, or the API."""
    if source is None:
        return KubernetesNamespaceLabels()
    if isinstance(source, Mapping):
        return lambda name: source.get(name, {})
    return source


def parse_listen(listen: str) -> tuple[str, int]:
    """"0.0.0.0:8443", "[::]:8443" or ":8443" -> (host, port); ValueError otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address {listen!r} is invalid: expected HOST:PORT, e.g. "
                         "0.0.0.0:8443 or [::]:8443")
    return host.strip("[]") or "0.0.0.0", int(port)


def make_server(
    *,
    listen: str,
    cert_file: str,
    key_file: str,
    settings: settings_mod.InjectSettings,
    namespace_labels: NamespaceLabels | None = None,
) -> WebhookServer:
    return WebhookServer(
        parse_listen(listen),
        certs=CertReloader(cert_file, key_file),
        settings=settings,
        labels_lookup=labels_lookup(namespace_labels),
    )


def serve(
    *,
    listen: str,
    cert_file: str,
    key_file: str,
    settings: settings_mod.InjectSettings,
    namespace_labels: NamespaceLabels | None = None,
) -> None:
    """Serve until interrupted."""
    server = make_server(listen=listen, cert_file=cert_file, key_file=key_file,
                         settings=settings, namespace_labels=namespace_labels)
    log.info("coral webhook listening on %s", listen)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def start_in_thread(
    *,
    cert_file: str,
    key_file: str,
    settings: settings_mod.InjectSettings,
    listen: str = "127.0.0.1:0",
    namespace_labels: NamespaceLabels | None = None,
) -> tuple[WebhookServer, int]:
    """Start serving in a daemon thread; stop with server.shutdown(); server.server_close()."""
    server = make_server(listen=listen, cert_file=cert_file, key_file=key_file,
                         settings=settings, namespace_labels=namespace_labels)
    threading.Thread(target=server.serve_forever, name="coral-webhook", daemon=True).start()
    return server, server.server_address[1]
