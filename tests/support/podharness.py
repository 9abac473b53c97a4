"""Real "pods" from Linux namespaces, shaped like containerd's, without a container runtime.

A pod is a pause process (an exec of `sleep` named `pause`) that is PID 1 of a new PID
namespace and owns new network, UTS and IPC namespaces. A container is a process
started inside those namespaces with its own mount namespace, in which it sees the
pod's /proc and a private tmpfs on /srv holding /srv/coral-marker (its name); only that
container can read the marker. Each one lives in its own cgroup named like containerd's:
<v2 mount>/kubepods/besteffort/pod<uid>/<64-hex id>. Needs root.

HARNESS SHORTCUT (`Pod.relay_to_host`): test colonies listen on this machine's loopback,
which a pod's own network namespace cannot reach; a relay listening on the pod's
127.0.0.1:<port> forwards each connection to the host's 127.0.0.1:<port>, standing in for
the pod network's route to the colony. Processes in the pod (a sidecar agent) dial the
colony's usual address and are otherwise fully inside the pod's network namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence

UNIFIED = "/sys/fs/cgroup/unified"
CGROUP_ROOT = UNIFIED if os.path.isdir(UNIFIED) else "/sys/fs/cgroup"
MARKER = "/srv/coral-marker"
CLONE_NEWNET = 0x40000000
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

# Runs inside the pod's PID/net/UTS/IPC namespaces and a fresh mount namespace.
_CONTAINER_SETUP = """set -e
echo $$ > "$1/cgroup.procs"
mount -t proc proc /proc
mount -t tmpfs -o size=1m coral-marker /srv
printf %s "$2" > /srv/coral-marker
shift 2
exec "$@"
"""


def _wait_for(what: str, check, *, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.01)
    raise TimeoutError(f"pod harness: timed out waiting for {what}")


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def listening_ports(host_pid: int) -> set[int]:
    """TCP ports in LISTEN state in the network namespace of host_pid."""
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in _read(f"/proc/{host_pid}/net/{table}").splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def rmdir_cgroup(path: str, *, timeout: float = 5.0) -> None:
    """rmdir a cgroup, waiting while killed processes are still leaving it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@dataclasses.dataclass
class PodContainer:
    name: str
    container_id: str
    cgroup: str
    popen: subprocess.Popen
    host_pid: int = 0

    @property
    def ns_pid(self) -> int:
        """The container's main pid as seen inside the pod's PID namespace."""
        for line in _read(f"/proc/{self.host_pid}/status").splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
        return 0


class Pod:
    def __init__(self, name: str = "app-pod", namespace: str = "default", *,
                 qos: str = "besteffort") -> None:
        self.name = name
        self.namespace = namespace
        self.uid = str(uuid.uuid4())
        self.sandbox_id = secrets.token_hex(32)
        self.cgroup = os.path.join(CGROUP_ROOT, "kubepods", qos, f"pod{self.uid}")
        self.containers: dict[str, PodContainer] = {}
        self.pause_pid = 0
        self._unshare: subprocess.Popen | None = None
        self._tmp = ""
        self._relays: dict[int, socket.socket] = {}

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Pod:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Pod:
        self._tmp = tempfile.mkdtemp(prefix="coral-pod-")
        pause = os.path.join(self._tmp, "pause")
        os.symlink(shutil.which("sleep"), pause)
        try:
            # setpriv, not a preexec_fn: gRPC's fork handlers (on in grpcio's wheel) abort
            # or hang a child forked while other threads of this test process are in gRPC;
            # without a preexec_fn, subprocess uses vfork and those handlers never run.
            # The parent-death signal: if the test process dies without cleanup, unshare
            # dies and takes the pod with it.
            self._unshare = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL",
                 "unshare", "--pid", "--fork", "--net", "--uts", "--ipc", "--mount-proc",
                 "--kill-child", pause, "infinity"], env=BASE_ENV)
            self.pause_pid = _wait_for("the pause process", self._find_pause)
            sandbox = os.path.join(self.cgroup, self.sandbox_id)
            _makedirs(sandbox)
            with open(os.path.join(sandbox, "cgroup.procs"), "w") as fh:
                fh.write(str(self.pause_pid))
            self._pod_ns(["--uts"], ["hostname", self.name])
            self._pod_ns(["--net"], ["ip", "link", "set", "lo", "up"])
        except BaseException:
            self.stop()
            raise
        return self

    def _find_pause(self) -> int:
        pid = self._unshare.pid
        if self._unshare.poll() is not None:  # say so at once, not after the wait
            raise RuntimeError(f"pod harness: unshare exited {self._unshare.returncode} "
                               "before starting the pause process")
        children = _read(f"/proc/{pid}/task/{pid}/children").split()
        for child in children:
            if _read(f"/proc/{child}/comm").strip() == "pause":
                return int(child)
        return 0

    def _pod_ns(self, flags: Sequence[str], argv: Sequence[str]) -> None:
        subprocess.run(["nsenter", f"--target={self.pause_pid}", *flags, "--", *argv],
                       check=True, env=BASE_ENV, capture_output=True)

    def relay_to_host(self, port: int) -> None:
        """Forward the pod's 127.0.0.1:port to this machine's 127.0.0.1:port (see the
        module note); the relay threads end with the pod's namespace. Idempotent per port."""
        if port in self._relays:
            return
        listener = _listen_in_netns(self.pause_pid, port)
        self._relays[port] = listener
        threading.Thread(target=relay_connections, args=(listener, port), daemon=True,
                         name=f"pod-relay-{self.name}-{port}").start()

    @property
    def proc_root(self) -> str:
        """The pod's /proc (its PID namespace), reachable from the host through the pause."""
        return f"/proc/{self.pause_pid}/root/proc"

    @property
    def hostname(self) -> str:
        return self.name

    # -- containers ----------------------------------------------------------------------

    def add_container(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                      port: int = 0, name_env: bool = True, wait: bool = True,
                      timeout: float = 10.0, **popen_kwargs) -> PodContainer:
        """Start a container; wait until it runs argv (and listens on port when given).

        name_env sets CORAL_CONTAINER_NAME as the Coral webhook does for app containers;
        wait=False returns at once (for short-lived processes; host_pid stays 0).
        """
        if name in self.containers:
            raise ValueError(f"pod {self.name} already has a container {name!r}")
        cid = secrets.token_hex(32)
        cgroup = os.path.join(self.cgroup, cid)
        _makedirs(cgroup)
        full_env = {**BASE_ENV, "HOSTNAME": self.name, **(env or {})}
        if name_env:
            full_env["CORAL_CONTAINER_NAME"] = name
        popen = subprocess.Popen(
            ["nsenter", f"--target={self.pause_pid}", "--pid", "--net", "--uts", "--ipc", "--",
             "unshare", "--mount", "--propagation", "private", "--",
             "sh", "-c", _CONTAINER_SETUP, "sh", cgroup, name, *argv],
            env=full_env, start_new_session=True, **popen_kwargs)
        container = PodContainer(name, cid, cgroup, popen)
        self.containers[name] = container
        if not wait:
            return container
        container.host_pid = _wait_for(f"container {name} to start", lambda: self._started(
            container, argv), timeout=timeout)
        if port:
            _wait_for(f"container {name} to listen on {port}",
                      lambda: port in listening_ports(container.host_pid), timeout=timeout)
        return container

    def _started(self, container: PodContainer, argv: Sequence[str]) -> int:
        if container.popen.poll() is not None:
            code = container.popen.returncode
            raise RuntimeError(f"container {container.name} exited with {code}")
        pids = _read(os.path.join(container.cgroup, "cgroup.procs")).split()
        if not pids:
            return 0
        pid = int(pids[0])
        if "/srv" not in _read(f"/proc/{pid}/mounts"):
            return 0
        cmdline = _read(f"/proc/{pid}/cmdline").split("\0")
        return pid if cmdline and cmdline[0] == argv[0] else 0

    def run_in_pod(self, argv: Sequence[str], *, name: str = "coral-agent",
                   env: Mapping[str, str] | None = None, **popen_kwargs) -> subprocess.Popen:
        """Start a process as a sidecar container of this pod (own cgroup and mount ns,
        the pod's PID namespace and /proc); returns its Popen (stdout etc. as asked)."""
        container = self.add_container(name, argv, env=env, name_env=False, wait=False,
                                       **popen_kwargs)
        return container.popen

    def stop_container(self, name: str, *, timeout: float = 10.0) -> None:
        container = self.containers.pop(name)
        kill_cgroup(container.cgroup)
        try:
            container.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(container.popen.pid, signal.SIGKILL)
            container.popen.wait(timeout)
        rmdir_cgroup(container.cgroup)

    def stop(self) -> None:
        """Kill every process of the pod and remove its cgroups (deepest first)."""
        for name in list(self.containers):
            self.stop_container(name)
        for listener in self._relays.values():
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self._relays.clear()
        if self._unshare is not None:
            if self.pause_pid:
                _kill(self.pause_pid)
            _kill(self._unshare.pid)
            self._unshare.wait(10)
            self._unshare = None
        remove_pod_cgroup(self.cgroup)
        for parent in (os.path.dirname(self.cgroup), os.path.dirname(os.path.dirname(self.cgroup))):
            try:
                os.rmdir(parent)  # shared by concurrent pods: only when empty
            except OSError:
                pass
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = ""


def _listen_in_netns(pid: int, port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port in the network namespace of pid, made by a
    short-lived thread (setns of a network namespace applies to the calling thread only)."""
    made: list = []

    def make() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                made.append(OSError(ctypes.get_errno(), f"setns into netns of {pid}"))
                return
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
                sock.listen(64)
                made.append(sock)
            finally:
                libc.setns(own, CLONE_NEWNET)
        except OSError as exc:
            made.append(exc)
        finally:
            os.close(own)
            os.close(target)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if isinstance(made[0], Exception):
        raise made[0]
    return made[0]


def relay_connections(listener: socket.socket, port: int) -> None:
    """Accept on listener until it closes; each connection is copied both ways to this
    machine's 127.0.0.1:port."""
    while True:
        try:
            inside, _ = listener.accept()
        except OSError:
            return  # the pod stopped
        try:
            outside = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            inside.close()
            continue
        outside.settimeout(None)
        threading.Thread(target=_relay, args=(inside, outside), daemon=True).start()


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both sides have finished sending."""
    peer = {a: b, b: a}
    sending = {a, b}
    with a, b:
        while sending:
            for src in select.select(list(sending), [], [])[0]:
                try:
                    data = src.recv(65536)
                    if data:
                        peer[src].sendall(data)
                        continue
                except OSError:
                    pass
                sending.discard(src)
                with contextlib.suppress(OSError):
                    peer[src].shutdown(socket.SHUT_WR)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def remove_pod_cgroup(path: str) -> None:
    """Kill what runs in a pod's cgroup and remove it, its children first; absent is fine."""
    if not os.path.isdir(path):
        return
    for entry in os.listdir(path):
        child = os.path.join(path, entry)
        if os.path.isdir(child):
            kill_cgroup(child)
            rmdir_cgroup(child)
    rmdir_cgroup(path)


def kill_cgroup(path: str) -> None:
    """SIGKILL every process in a cgroup: cgroup.kill where the kernel has it (the whole
    subtree at once), else each pid of its cgroup.procs."""
    kill_file = os.path.join(path, "cgroup.kill")
    if os.path.exists(kill_file):
        with open(kill_file, "w") as fh:
            fh.write("1")
        return
    for pid in _read(os.path.join(path, "cgroup.procs")).split():
        _kill(int(pid))


def _makedirs(path: str) -> None:
    # a concurrent pod may rmdir an empty shared parent between our mkdirs: retry
    for _ in range(20):
        try:
            os.makedirs(path, exist_ok=True)
            return
        except FileNotFoundError:
            time.sleep(0.01)
    os.makedirs(path, exist_ok=True)
