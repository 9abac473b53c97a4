"""Colony addresses: one host:port, several (comma-separated: replicas), or one name that
resolves to several. Pure: turns the setting into a gRPC target that fails over.

Several IP addresses become one `ipv4:`/`ipv6:` target, and one DNS name is resolved by
gRPC to all its addresses; with gRPC's pick_first policy a channel whose replica dies
reconnects to the next address, so agents and operator clients fail over on their own.
Several host *names* are refused with a clear error: give their IP addresses, or one DNS
name (a Kubernetes Service, a round-robin record) that resolves to every replica.

With several addresses a down replica is not the only place to go, so gRPC's own reconnect
backoff (jittered, 1 s growing x1.6, 120 s by default) is capped at FAILOVER_RECONNECT_CAP:
after every replica was briefly unreachable (a rolling restart) clients come back within
seconds, each at most once per cap, jittered, so a colony that is down is not hammered.
"""

from __future__ import annotations

import ipaddress

FAILOVER_RECONNECT_CAP = 4.0  # seconds; gRPC's reconnect backoff cap with several addresses


class AddressError(ValueError):
    """An address setting that is not host:port[,host:port...]; the message names it."""


def split(address: str) -> list[str]:
    """host:port entries of `address`, checked; AddressError names the bad one."""
    parts = [p.strip() for p in address.split(",") if p.strip()]
    if not parts:
        raise AddressError("colony address is empty: expected host:port[,host:port...]")
    for part in parts:
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise AddressError(f"invalid address {part!r}: expected host:port, e.g. "
                               "127.0.0.1:9443 (several: comma-separated)")
    return parts


def several(address: str) -> bool:
    """Whether `address` lists several replicas (so a client has somewhere to fail over)."""
    return len(split(address)) > 1


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def grpc_target(address: str) -> tuple[str, list[tuple[str, str]]]:
    """(target, channel options) for `address`. Several IP addresses of one family: one
    target listing them all, TLS checked against the first host (every replica's server
    certificate carries the same names)."""
    parts = split(address)
    if len(parts) == 1:
        return parts[0], []
    hosts = [_ip(p.rpartition(":")[0]) for p in parts]
    if not all(h is not None for h in hosts) or len({h.version for h in hosts}) != 1:
        raise AddressError(f"colony addresses {address!r}: several addresses must be IP "
                           "addresses of one family; for host names give one DNS name that "
                           "resolves to every replica")
    scheme = "ipv4" if hosts[0].version == 4 else "ipv6"
    first = parts[0].rpartition(":")[0].strip("[]")
    return f"{scheme}:{','.join(parts)}", [
        ("grpc.ssl_target_name_override", first), ("grpc.default_authority", first),
        ("grpc.max_reconnect_backoff_ms", int(FAILOVER_RECONNECT_CAP * 1000))]
