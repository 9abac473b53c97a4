"""Sidecar discovery: the containers of a pod, seen through a shared PID namespace's /proc.

Processes are grouped into containers by the container id in their cgroup path (the
mount namespace when there is none); the pause process and the agent's own container
are skipped. Per container: its pids, its listening TCP ports, a service name.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence

from coral_lib import runtime, service

SERVICE_NAME_VARS = ("OTEL_SERVICE_NAME", "SERVICE_NAME")
CONTAINER_NAME_VAR = "CORAL_CONTAINER_NAME"  # set per app container by the webhook
ENVIRON_PIDS = 3  # how many of a container's first pids are read for names (bounds cost)
TCP_LISTEN = "0A"
HiddenReader = Callable[[int, str], bytes]  # (pid, /proc file name) -> its bytes, b"" if none


@dataclasses.dataclass(frozen=True)
class Container:
    key: str  # container id, else "mnt:[inode]"
    container_id: str  # "" when the cgroup names none
    name: str
    service_name: str
    pids: tuple[int, ...]
    ports: tuple[int, ...]
    process_name: str = ""
    pod_uid: str = ""

    @property
    def main_pid(self) -> int:
        return self.pids[0]


class ContainerNotFound(LookupError):
    """The requested container is not one of the pod's app containers (message fit to show).
    Callers in ops/agent turn it into an OperationError: discovery sits below ops."""


@dataclasses.dataclass
class _Proc:
    pid: int
    cid: str | None
    mnt: str
    cgroup: str


def _read(path: str) -> bytes:
    """Whole small /proc file; os-level calls because this runs for every process."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _processes(proc_root: str) -> list[_Proc]:
    out = []
    try:
        names = os.listdir(proc_root)
    except OSError as exc:
        raise FileNotFoundError(f"cannot list the /proc root {proc_root!r}: {exc.strerror}"
                                " (give the procfs mount of the pod's PID namespace)") from exc
    for name in names:
        if not name.isdigit():
            continue
        cgroup = _read(f"{proc_root}/{name}/cgroup").decode(errors="replace")
        if not cgroup:
            continue  # exited meanwhile
        cid = runtime.container_id_from_cgroup(cgroup)
        mnt = "" if cid else _readlink(f"{proc_root}/{name}/ns/mnt")  # fallback key only
        out.append(_Proc(int(name), cid, mnt, cgroup))
    out.sort(key=lambda p: p.pid)
    return out


def _is_pause(proc_root: str, pid: int) -> bool:
    # PID 1 of a pod's shared PID namespace is always the sandbox (pause) process, whatever
    # its image runs; elsewhere it is recognised by name.
    if pid == 1:
        return True
    cmdline = _read(f"{proc_root}/{pid}/cmdline").decode(errors="replace").split("\0")
    return runtime.is_pause(cmdline)


def parse_listen_inodes(text: str) -> dict[int, int]:
    """socket inode -> port of the LISTEN sockets in a /proc/net/tcp or tcp6 table."""
    out = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[3] == TCP_LISTEN:
            out[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return out


def _listen_table(proc_root: str, pid: int, cache: dict[str, dict[int, int]]) -> dict[int, int]:
    """Listening sockets of pid's network namespace not yet claimed, read once per namespace.

    Claimed inodes are removed from the cached table, so once every listener of a
    namespace has its owner the remaining processes need no fd walk (scan speed).
    """
    netns = _readlink(f"{proc_root}/{pid}/ns/net") or f"pid:{pid}"
    if netns not in cache:
        table: dict[int, int] = {}
        for name in ("tcp", "tcp6"):
            table.update(parse_listen_inodes(_read(f"{proc_root}/{pid}/net/{name}").decode()))
        cache[netns] = table
    return cache[netns]


def _socket_inodes(proc_root: str, pid: int) -> set[int]:
    out = set()
    fd_dir = f"{proc_root}/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return out
    for fd in names:
        link = _readlink(f"{fd_dir}/{fd}")
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def parse_environ(data: bytes) -> dict[str, str]:
    env = {}
    for item in data.decode(errors="replace").split("\0"):
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
    return env


def _names(proc_root: str, pids: Sequence[int],
           read_hidden: HiddenReader | None = None) -> tuple[str, str]:
    """(service name, container name) from the environment of the container's first pids."""
    svc = cname = ""
    for pid in pids[:ENVIRON_PIDS]:
        data = _read(f"{proc_root}/{pid}/environ")
        if not data and read_hidden is not None:
            data = read_hidden(pid, "environ")
        env = parse_environ(data)
        svc = svc or next((env[k] for k in SERVICE_NAME_VARS if env.get(k)), "")
        cname = cname or env.get(CONTAINER_NAME_VAR, "")
        if svc and cname:
            break
    return svc, cname


def _claim_ports(proc_root: str, groups: dict[str, list[_Proc]]) -> dict[str, set[int]]:
    """Listening ports per group: each LISTEN socket's inode found among the group's fds.

    Every group's first process goes first (it usually holds the listener), then the
    rest, and the fd walk stops once no listener is unclaimed (the bulk of scan cost).
    """
    cache: dict[str, dict[int, int]] = {}
    tables = {key: _listen_table(proc_root, procs[0].pid, cache) for key, procs in groups.items()}
    ports: dict[str, set[int]] = {key: set() for key in groups}
    firsts = [(key, procs[0].pid) for key, procs in groups.items()]
    rest = [(key, p.pid) for key, procs in groups.items() for p in procs[1:]]
    for key, pid in firsts + rest:
        if not any(cache.values()):
            break
        table = tables[key]
        for inode in _socket_inodes(proc_root, pid) & table.keys() if table else ():
            ports[key].add(table.pop(inode))
    return ports


def _container(proc_root: str, key: str, procs: list[_Proc], *, names: Mapping[str, str],
               ports: set[int], read_hidden: HiddenReader | None = None) -> Container:
    pids = tuple(p.pid for p in procs)
    cid = procs[0].cid or ""
    svc, env_name = _names(proc_root, pids, read_hidden)
    name = names.get(cid) or env_name or (cid[:12] if cid else key)
    comm = _read(f"{proc_root}/{pids[0]}/comm").decode(errors="replace").strip()
    return Container(key=key, container_id=cid, name=name, service_name=svc or name, pids=pids,
                     ports=tuple(sorted(ports)), process_name=comm,
                     pod_uid=runtime.pod_uid_from_cgroup(procs[0].cgroup) or "")


def scan(
    *,
    proc_root: str = "/proc",
    self_pid: int | None = None,
    names: Mapping[str, str] | None = None,
    read_hidden: HiddenReader | None = None,
) -> list[Container]:
    """The app containers visible in proc_root, ordered by their first pid.

    `read_hidden(pid, "environ")` is asked for an environment the ptrace access check
    hides (another user's process, no CAP_SYS_PTRACE); the sidecar reads it as its owner.

    `self_pid` is the agent's pid as seen in proc_root (default: /proc/self); its container
    is skipped, as is every container whose first process is a pause. `names` maps
    container ids to names (e.g. from CRI); else CORAL_CONTAINER_NAME in a process's env.
    """
    groups: dict[str, list[_Proc]] = {}
    for proc in _processes(proc_root):
        groups.setdefault(proc.cid or proc.mnt or f"pid:{proc.pid}", []).append(proc)
    me = str(self_pid) if self_pid else "self"
    self_cid, self_mnt = runtime.process_key(proc_root, me)
    self_key = self_cid or self_mnt
    ports = _claim_ports(proc_root, groups)  # the agent's own listeners are claimed too
    out = [
        _container(proc_root, key, procs, names=names or {}, ports=ports[key],
                   read_hidden=read_hidden)
        for key, procs in groups.items()
        if key != self_key and not _is_pause(proc_root, procs[0].pid)
    ]
    return sorted(out, key=lambda c: c.main_pid)


def services(
    containers: Iterable[Container],
    *,
    node_name: str = "",
    namespace: str = "",
    pod_name: str = "",
) -> list[service.ServiceInfo]:
    """One DISCOVERED ServiceInfo per container port (port 0 for a container without ports)."""
    out = []
    for c in containers:
        for port in c.ports or (0,):
            out.append(service.ServiceInfo(
                component_name=c.service_name, port=port, provenance=service.Provenance.DISCOVERED,
                node_name=node_name, namespace=namespace, pod_name=pod_name,
                container_name=c.name, pid=c.main_pid, process_name=c.process_name,
            ))
    return out


def select_container(containers: Sequence[Container], name: str = "", *,
                     default: str = "", by_id: bool = True) -> Container:
    """The container called `name` (or, with by_id, with that id / a unique id prefix of
    >= 6 chars). Operation targets pass by_id=False: exact names only, never an id.

    Without a name: the `default` container when given and present (the pod's
    kubectl.kubernetes.io/default-container annotation), else the first app container.
    """
    if not containers:
        raise ContainerNotFound("no app container is visible in this pod"
                                " (is shareProcessNamespace enabled?)")
    if not name:
        return next((c for c in containers if default and c.name == default), containers[0])
    for c in containers:
        if name == c.name or by_id and name in (c.container_id, c.key):
            return c
    prefixed = [c for c in containers
                if by_id and len(name) >= 6 and c.container_id.startswith(name)]
    if len(prefixed) == 1:
        return prefixed[0]
    listing = ", ".join(c.name for c in containers)
    raise ContainerNotFound(f"no container {name!r} in this pod; containers: {listing}")
