"""The plain-HTTP listener for /metrics, /healthz and /readyz (colony and agents).

It is a separate listener from the gRPC port (`--metrics-listen`, `--health-listen`, off
by default): scrapers and kubelet probes need no TLS client identity, and what they
can read here is counts and health, never registry or audit contents. Bind it to
loopback or a pod IP, not to an address operators' networks reach, unless that is wanted.
"""

from __future__ import annotations

import dataclasses
import http.server
import logging
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import core

    from coral_lib import metrics_text

# prometheus_client (~4 MB) loads with the colony's or the webhook's /metrics registry;
# agents serve theirs with coral_lib.metrics_text and never import it.
log = logging.getLogger(__name__)
Check = Callable[[], list[str]]  # problems; [] when fine


class ListenError(ValueError):
    """A HOST:PORT the listener cannot use; the message names it."""


def parse_listen(text: str, *, flag: str) -> tuple[str, int]:
    """'HOST:PORT' or '[V6]:PORT' -> (host, port); ListenError naming the flag."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ListenError(f"{flag} {text!r}: expected HOST:PORT (e.g. 127.0.0.1:9464 or "
                          "[::1]:9464), port 0-65535")
    return host, int(port)


@dataclasses.dataclass
class Routes:
    """What one listener answers; None leaves the path at 404."""

    registry: core.CollectorRegistry | metrics_text.Registry | None = None
    live: Check | None = None
    ready: Check | None = None

    def merged(self, other: Routes) -> Routes:
        return Routes(registry=self.registry or other.registry, live=self.live or other.live,
                      ready=self.ready or other.ready)


def answer(routes: Routes, path: str) -> tuple[int, bytes, str]:
    """(status, body, content type) for a GET of `path`."""
    path = path.split("?", 1)[0]
    if path == "/metrics" and routes.registry is not None:
        from coral_lib import metrics

        body, content_type = metrics.exposition(routes.registry)
        return 200, body, content_type
    check = {"/healthz": routes.live, "/livez": routes.live, "/readyz": routes.ready}.get(path)
    if check is None:
        served = [p for p, on in (("/metrics", routes.registry), ("/healthz", routes.live),
                                  ("/readyz", routes.ready)) if on is not None]
        return 404, f"not found: this listener serves {', '.join(served)}\n".encode(), \
            "text/plain"
    try:
        problems = check()
    except Exception as exc:  # noqa: BLE001 - a failing check is an unhealthy answer
        problems = [f"check failed: {type(exc).__name__}: {exc}"]
    if problems:
        return 503, ("".join(f"not ok: {p}\n" for p in problems)).encode(), "text/plain"
    return 200, b"ok\n", "text/plain"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Endpoint
    timeout = 30

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        status, body, content_type = answer(self.server.routes, self.path)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)


class Endpoint(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], routes: Routes) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.routes = routes
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> Endpoint:
        threading.Thread(target=self.serve_forever, name="endpoint", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def serve(listeners: list[tuple[str, str, Routes]]) -> list[Endpoint]:
    """One started Endpoint per distinct HOST:PORT, from (flag, HOST:PORT, routes) triples;
    routes for one address are merged (`--metrics-listen` and `--health-listen` may name
    the same port) and empty addresses skipped. ListenError names the flag."""
    merged: dict[tuple[str, int], tuple[str, Routes]] = {}
    for flag, listen, routes in listeners:
        if listen:
            address = parse_listen(listen, flag=flag)
            seen = merged.get(address)
            merged[address] = (flag, seen[1].merged(routes) if seen else routes)
    started: list[Endpoint] = []
    try:
        for address, (flag, routes) in merged.items():
            try:
                started.append(Endpoint(address, routes).start())
            except OSError as exc:
                raise ListenError(f"{flag} {address[0]}:{address[1]}: cannot listen: "
                                  f"{exc.strerror or exc}") from None
    except ListenError:
        for endpoint in started:
            endpoint.stop()
        raise
    return started
