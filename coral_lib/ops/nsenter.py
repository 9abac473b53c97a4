"""Backend: run a command inside another process's container (its namespaces, root, cwd, env).

Uses util-linux `nsenter` rather than setns from Python: entering a PID namespace needs
a fork after setns plus a parent that relays the exit status, and forking a threaded
gRPC server to run Python code before exec is unsafe (os.setns only exists from 3.12
anyway). nsenter does setns + fork + wait in C and propagates exit code and signals.
"""

from __future__ import annotations

import os
import shutil

from coral_lib import capabilities, runtime
from coral_lib.discovery import procfs
from coral_lib.ops import base, capture

NAMESPACES = ("--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup")
# setns into a mount ns needs SYS_ADMIN + SYS_CHROOT; reading another process's ns links
# (ptrace access check) needs SYS_PTRACE.
REQUIRED_CAPS = ("CAP_SYS_ADMIN", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE")


def check_capabilities(*, proc_root: str = "/proc") -> None:
    """Raise OperationError naming the capabilities this process lacks for namespace entry."""
    lacking = capabilities.missing(capabilities.read_mask(proc_root=proc_root), REQUIRED_CAPS)
    if lacking:
        raise base.OperationError(f"namespace entry denied: missing {', '.join(lacking)}")


def target_environ(pid: int, *, proc_root: str = "/proc") -> dict[str, str]:
    """The environment the target process was started with."""
    try:
        with open(f"{proc_root}/{pid}/environ", "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise base.OperationError(f"cannot read the environment of pid {pid}: {exc}") from exc
    env = {}
    for item in data.decode(errors="replace").split("\0"):
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
    return env


def nsenter_argv(pid: int, *, cwd: str = "", proc_root: str = "/proc",
                 namespaces: tuple[str, ...] = NAMESPACES, enter_root: bool = True) -> list[str]:
    """The nsenter prefix: namespaces of pid, then (enter_root) its root and its cwd (or
    `cwd` inside its root)."""
    binary = shutil.which("nsenter")
    if binary is None:
        raise base.OperationError("namespace entry needs the nsenter binary (util-linux)")
    argv = [binary, f"--target={pid}", *namespaces]
    if enter_root:
        wd = f"--wd={proc_root}/{pid}/root/{cwd.lstrip('/')}" if cwd else "--wd"
        argv += ["--root", wd]
    return argv + ["--"]


def _check_target(pid: int, proc_root: str) -> None:
    if pid <= 0:
        raise base.OperationError("the nsenter backend needs a target pid (request.target.pid)")
    if not os.path.exists(f"{proc_root}/{pid}"):
        raise base.OperationError(f"target process {pid} not found (has its container exited?)")


def prepare(pid: int, *, env: dict[str, str], cwd: str = "",
            proc_root: str = "/proc") -> tuple[list[str], dict[str, str]]:
    """Checks, then (argv prefix, environment) to run something inside pid's container."""
    _check_target(pid, proc_root)
    check_capabilities(proc_root=proc_root)
    full_env = {**target_environ(pid, proc_root=proc_root), **env}
    return nsenter_argv(pid, cwd=cwd, proc_root=proc_root), full_env


class NsenterBackend:
    name = "nsenter"

    def __init__(self, *, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root

    def run(self, request: base.ExecRequest) -> base.ExecResult:
        pid = request.target.pid
        prefix, env = prepare(pid, env=dict(request.env), cwd=request.cwd,
                              proc_root=self.proc_root)
        argv = base.effective_argv(request)
        result = capture.run_process(prefix + argv, timeout=request.timeout,
                                     max_output=request.max_output, stdin=request.stdin, env=env,
                                     cancel=request.cancel)
        if result.exit_code != 0 and result.stderr.startswith(b"nsenter: "):
            # nsenter itself failed (entering a namespace or exec): not the command's output
            reason = result.stderr.decode(errors="replace").strip().removeprefix("nsenter: ")
            raise base.OperationError(f"cannot run {argv[0]!r} in pid {pid}'s container: {reason}")
        return result


def _pids_matching(proc_root: str, predicate) -> list[int]:
    pids = []
    for name in os.listdir(proc_root):
        if name.isdigit():
            try:
                with open(f"{proc_root}/{name}/cgroup") as fh:
                    text = fh.read()
            except OSError:
                continue
            if predicate(text):
                pids.append(int(name))
    return sorted(pids)


def find_container_pid(*, container_id: str, proc_root: str = "/proc") -> int:
    """The lowest pid whose cgroup names container_id (full id or a prefix of >= 12 chars)."""
    cid = container_id.split("://", 1)[-1]  # accept k8s "containerd://<id>" form
    if len(cid) < 12:
        raise base.OperationError(f"container id {container_id!r} is too short: give >= 12 chars")
    pids = _pids_matching(proc_root, lambda text: (
        (runtime.container_id_from_cgroup(text) or "").startswith(cid)))
    if not pids:
        raise base.OperationError(f"no process of container {cid[:12]} on this node")
    return pids[0]


def find_pod_container(
    *, pod_uid: str, container_name: str, proc_root: str = "/proc",
    names: dict[str, str] | None = None,
) -> procfs.Container:
    """One container of a pod, by exact name, from a hostPID /proc scan: only processes
    whose cgroup names the pod's UID are considered, so nothing outside the pod is found.

    `names` maps container ids to names (e.g. from the pod's containerStatuses); without
    it names come from CORAL_CONTAINER_NAME in the containers' environment.
    """
    uid = pod_uid.replace("_", "-")
    in_pod = [c for c in procfs.scan(proc_root=proc_root, names=names or {})
              if uid and c.pod_uid == uid and c.container_id]
    if not in_pod:
        raise base.OperationError(f"no container of pod {pod_uid} on this node")
    try:
        return procfs.select_container(in_pod, container_name, by_id=False)
    except procfs.ContainerNotFound as exc:
        raise base.OperationError(str(exc)) from exc


def find_pod_container_pid(*, pod_uid: str, container_name: str, proc_root: str = "/proc",
                           names: dict[str, str] | None = None) -> int:
    """The main pid of find_pod_container()."""
    return find_pod_container(pod_uid=pod_uid, container_name=container_name,
                              proc_root=proc_root, names=names).main_pid
