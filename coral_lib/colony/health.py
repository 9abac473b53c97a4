"""The colony's /healthz (the process answers) and /readyz (it can serve and keep records).

Ready means: the data directory takes a write (registry, approvals and audit databases
live there), the audit checkpoint sink takes a write, and the gRPC port accepts a TCP
connection. Each probe writes and removes a small file, fsynced, so a read-only mount
or a full disk shows as unready before the next audit record fails.
"""

from __future__ import annotations

import os
import pathlib
import socket
import threading
from collections.abc import Callable

from coral_lib import endpoint, metrics

PROBE_BYTES = 4096  # one block: a disk with less room than this cannot take a record


def writable(directory: str | os.PathLike, what: str) -> str:
    """'' when a file can be created, written, synced and removed in `directory`."""
    path = pathlib.Path(directory) / f".readyz-{os.getpid()}-{threading.get_ident()}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        _remove(path)
        return f"{what} {directory} is not writable: {exc.strerror or exc}"
    _remove(path)
    return ""


def _remove(path: pathlib.Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def accepting(host: str, port: int, *, timeout: float = 1.0) -> str:
    """'' when host:port accepts a TCP connection (a wildcard host is tried on loopback)."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1", "": "127.0.0.1"}.get(
        host, host.strip("[]"))
    try:
        with socket.create_connection((target, port), timeout=timeout):
            return ""
    except OSError as exc:
        return f"the gRPC port {host}:{port} does not accept connections: " \
               f"{exc.strerror or exc}"


def problems(*, data_dir: str | os.PathLike, sink_dir: str | os.PathLike | None,
             host: str, port: int, serving: bool) -> list[str]:
    """Why the colony is not ready; [] when it is."""
    if not serving:
        return ["the colony is not serving (starting or stopping)"]
    found = [writable(data_dir, "storage: the data directory")]
    if sink_dir is not None:
        found.append(writable(sink_dir, "audit sink: the checkpoint directory"))
    found.append(accepting(host, port))
    return [p for p in found if p]


def routes(server, m: metrics.Colony) -> endpoint.Routes:
    """/metrics, /healthz and /readyz for a running server.ColonyServer."""
    host = server.listen.rpartition(":")[0]
    state = server.state

    def ready() -> list[str]:
        return problems(data_dir=state.files.data_dir, sink_dir=state.checkpoint_dir,
                        host=host, port=server.port, serving=server.serving)

    live: Callable[[], list[str]] = lambda: []  # noqa: E731 - answering is being alive
    return endpoint.Routes(registry=m.registry, live=live, ready=ready)
