"""Service health probes (`agent.mode: active`).

Each service with a port is probed every `health_interval_seconds` (default 30 s): an HTTP
GET of its health endpoint when it has one (2xx/3xx is healthy), else a TCP connect to its
port, always to 127.0.0.1 in the service's network namespace. A service whose process the
agent knows (pid) is probed in that process's namespace: a short-lived thread enters it
with setns(2) (network namespaces are per thread), probes, and ends, so the agent's other
threads never leave their own namespace. When the namespace is the agent's own (host mode,
a sidecar in its pod) nothing is entered and no capability is needed.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
import threading
import time
from collections.abc import Callable

from coral_lib import convert
from coral_lib._proto.coral.mesh.v1 import mesh_pb2

DEFAULT_INTERVAL = 30.0
TIMEOUT = 2.0
CLONE_NEWNET = 0x40000000


@dataclasses.dataclass(frozen=True)
class Probe:
    key: str  # convert.service_key of the service
    port: int
    path: str  # '' probes with a TCP connect
    interval: float
    netns: str  # '' = the agent's own network namespace, else /proc/<pid>/ns/net


NetnsOf = Callable[[mesh_pb2.ServiceInfo], str]


def pid_netns(svc: mesh_pb2.ServiceInfo, *, proc_root: str = "/proc") -> str:
    """The network namespace of the service's process when the agent knows its pid, else
    '' (the agent's own: host mode)."""
    return f"{proc_root}/{svc.pid}/ns/net" if svc.pid > 0 else ""


def probes(services: list[mesh_pb2.ServiceInfo]) -> list[tuple[Probe, mesh_pb2.ServiceInfo]]:
    """Pure: what to probe for a service set (services without a port are not probed);
    each probe's netns is filled when it is due (finding it may read /proc or CRI)."""
    return [(Probe(key=convert.service_key(s), port=s.port, path=s.health_endpoint,
                   interval=s.health_interval_seconds or DEFAULT_INTERVAL, netns=""), s)
            for s in services if 0 < s.port < 65536]


def check(probe: Probe, *, timeout: float = TIMEOUT) -> str:
    """'' when the service answered healthy, else what went wrong. Runs the probe in a
    thread of its own that enters the service's network namespace when it is not ours."""
    outcome: list[str] = ["probe did not finish"]

    def run() -> None:
        try:
            _enter(probe.netns)
            outcome[0] = _http(probe, timeout) if probe.path else _tcp(probe, timeout)
        except OSError as exc:
            outcome[0] = _oserror(exc)

    thread = threading.Thread(target=run, name=f"probe-{probe.port}", daemon=True)
    thread.start()
    thread.join(timeout * 2 + 1)
    return outcome[0]


def _enter(netns: str) -> None:
    if not netns:
        return
    if not os.path.exists(netns):
        raise OSError(errno.ESRCH, "the service's process is gone")
    if _same_file(netns, "/proc/thread-self/ns/net"):
        return
    import ctypes  # only once a probe must enter another netns (os.setns is 3.12+)

    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"cannot enter network namespace {netns}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _same_file(a: str, b: str) -> bool:
    one, two = os.stat(a), os.stat(b)
    return (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino)


def _tcp(probe: Probe, timeout: float) -> str:
    with socket.create_connection(("127.0.0.1", probe.port), timeout=timeout):
        return ""


def _http(probe: Probe, timeout: float) -> str:
    import http.client  # only active agents probe: http.client loads the email package

    conn = http.client.HTTPConnection("127.0.0.1", probe.port, timeout=timeout)
    try:
        conn.request("GET", probe.path, headers={"User-Agent": "coral-agent-health"})
        status = conn.getresponse().status
    except http.client.HTTPException as exc:
        return f"GET {probe.path}: {type(exc).__name__}"
    finally:
        conn.close()
    return "" if 200 <= status < 400 else f"GET {probe.path}: HTTP {status}"


def _oserror(exc: OSError) -> str:
    if isinstance(exc, TimeoutError) or isinstance(exc, socket.timeout):
        return "timed out"
    return exc.strerror or str(exc)


class Prober:
    """Runs due probes for the agent's current services and keeps the latest result of
    each; `drain()` hands the results finished since the last call to the heartbeat."""

    def __init__(self, services: Callable[[], list[mesh_pb2.ServiceInfo]], *,
                 clock: Callable[[], float] = time.time, netns_of: NetnsOf = pid_netns) -> None:
        self.services, self.clock, self.netns_of = services, clock, netns_of
        self._due: dict[str, float] = {}
        self._fresh: dict[str, mesh_pb2.ServiceHealth] = {}
        self._lock = threading.Lock()

    def run_due(self) -> int:
        """Probe every service whose interval has passed; how many were probed."""
        now, ran = self.clock(), 0
        current = probes(self.services())
        self._due = {p.key: self._due.get(p.key, 0.0) for p, _ in current}
        for probe, svc in current:
            if self._due[probe.key] > now:
                continue
            self._due[probe.key] = now + probe.interval
            self._record(probe.key, *self._probe(probe, svc))
            ran += 1
        return ran

    def _probe(self, probe: Probe, svc: mesh_pb2.ServiceInfo) -> tuple[str, str]:
        """(state, error): unknown when the service's namespace cannot be found."""
        try:
            probe = dataclasses.replace(probe, netns=self.netns_of(svc))
        except Exception as exc:  # noqa: BLE001 - a resolver error is this probe's result
            return "unknown", f"network namespace not found: {exc}"
        error = check(probe)
        return ("unhealthy" if error else "healthy"), error

    def _record(self, key: str, state: str, error: str) -> None:
        with self._lock:
            self._fresh[key] = mesh_pb2.ServiceHealth(
                service_key=key, state=state, last_check=self.clock(), last_error=error)

    def drain(self) -> list[mesh_pb2.ServiceHealth]:
        with self._lock:
            fresh, self._fresh = list(self._fresh.values()), {}
        return fresh

    def run_forever(self, stop: threading.Event, *, tick: float = 0.5) -> None:
        while not stop.wait(tick):
            self.run_due()
