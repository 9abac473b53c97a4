"""Host discovery: listening TCP sockets of this machine's processes (psutil)."""

from __future__ import annotations

import psutil

from coral_lib import service

# Ports of the agent/colony themselves are not services worth registering.
IGNORED_PROCESS_NAMES = frozenset({"coral"})


def listening_sockets() -> list[tuple[int, int, str]]:
    """(port, pid, process name) of every listening TCP socket, deduplicated by port+pid."""
    seen: dict[tuple[int, int], str] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or not conn.laddr:
            continue
        key = (conn.laddr.port, conn.pid or 0)
        if key not in seen:
            seen[key] = _process_name(conn.pid)
    return sorted((port, pid, name) for (port, pid), name in seen.items())


def _process_name(pid: int | None) -> str:
    if not pid:
        return ""
    try:
        return psutil.Process(pid).name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def candidates(sockets: list[tuple[int, int, str]], *, node_name: str,
               exclude_pids: frozenset[int] = frozenset()) -> list[service.ServiceInfo]:
    """One DISCOVERED ServiceInfo per listening port, named after its process."""
    found: dict[int, service.ServiceInfo] = {}
    for port, pid, name in sockets:
        if pid in exclude_pids or name in IGNORED_PROCESS_NAMES or port in found:
            continue
        found[port] = service.ServiceInfo(
            component_name=name or f"port-{port}", port=port, service_type="tcp",
            provenance=service.Provenance.DISCOVERED, node_name=node_name, pid=pid,
            process_name=name,
        )
    return [found[p] for p in sorted(found)]
