"""Backend: run a command in another container of the same pod through `/proc/<pid>/root`,
as that container's process's own user -- the sidecar's least-privilege path.

In a pod with shareProcessNamespace the containers already share the network, IPC, UTS
and PID namespaces; only the filesystem differs. So instead of setns into the app's mount
namespace (CAP_SYS_ADMIN) the command is started with chroot through `/proc/<pid>/root`.
The kernel lets a process use another's `/proc/<pid>/root`, `cwd` and `environ` when the
ptrace access check passes: same uid and gid, and the target's capabilities a subset of
the caller's (CAP_SYS_PTRACE skips the check). So the child first becomes the app's
uid/gid/groups with util-linux `setpriv`, keeping only CAP_SYS_CHROOT as an ambient
capability, then a tiny single-threaded Python (no Python runs between fork and exec in
the threaded agent) reads the app's environment, enters its cwd and root, clears the
ambient capability and execs the command. Needs CAP_SETUID, CAP_SETGID and CAP_SYS_CHROOT:
all in the container runtime's default set and in Pod Security baseline. An app with
capabilities beyond the sidecar's needs CAP_SYS_PTRACE (the pod annotation
coral.io/sidecar-ptrace: "true").

The command runs in the agent's cgroup (its resources count against the sidecar) and with
the agent's capability bounding set.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys

from coral_lib import capabilities
from coral_lib.ops import base, capture

REQUIRED_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SYS_CHROOT")
ERROR_PREFIX = "coral-chroot: "
PTRACE_HINT = ("; an app container with capabilities beyond the sidecar's needs SYS_PTRACE "
               "for the sidecar (pod annotation coral.io/sidecar-ptrace: \"true\")")



@dataclasses.dataclass(frozen=True)
class Owner:
    uid: int
    gid: int
    groups: tuple[int, ...]


def parse_owner(status: str) -> Owner:
    """The effective uid, gid and supplementary groups from a /proc/<pid>/status text."""
    fields = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    try:
        return Owner(uid=int(fields["Uid"][1]), gid=int(fields["Gid"][1]),
                     groups=tuple(int(g) for g in fields.get("Groups", [])))
    except (KeyError, IndexError, ValueError) as exc:
        raise base.OperationError(f"unreadable process status: {exc}") from exc


def owner(pid: int, *, proc_root: str = "/proc") -> Owner:
    try:
        with open(f"{proc_root}/{pid}/status") as fh:
            return parse_owner(fh.read())
    except OSError as exc:
        raise base.OperationError(
            f"target process {pid} not found (has its container exited?): {exc.strerror}"
        ) from exc


def setpriv_argv(who: Owner, *, keep_chroot: bool = True) -> list[str]:
    """Become `who`; with keep_chroot, CAP_SYS_CHROOT stays as an ambient capability."""
    binary = shutil.which("setpriv")
    if binary is None:
        raise base.OperationError("the chroot backend needs the setpriv binary (util-linux)")
    groups = (f"--groups={','.join(map(str, who.groups))}" if who.groups
              else "--clear-groups")
    argv = [binary, f"--reuid={who.uid}", f"--regid={who.gid}", groups]
    if keep_chroot:
        argv += ["--inh-caps=-all,+sys_chroot", "--ambient-caps=+sys_chroot"]
    return argv + ["--"]


def check_capabilities(*, proc_root: str = "/proc") -> None:
    lacking = capabilities.missing(capabilities.read_mask(proc_root=proc_root), REQUIRED_CAPS)
    if lacking:
        raise base.OperationError(f"entering the app's filesystem denied: missing "
                                  f"{', '.join(lacking)}")


def prepare(pid: int, *, env: dict[str, str], cwd: str = "",
            proc_root: str = "/proc") -> tuple[list[str], dict[str, str]]:
    """Checks, then (argv prefix, environment of the prefix) to run a command in pid's
    container as pid's owner. The environment holds only the request's extra variables:
    the helper lays them over the app process's own."""
    if pid <= 0:
        raise base.OperationError("the chroot backend needs a target pid (request.target.pid)")
    check_capabilities(proc_root=proc_root)
    who = owner(pid, proc_root=proc_root)
    helper = [sys.executable, "-I", "-S", "-c", base.program_text("chroot_helper.py"),
              str(pid), cwd]
    return setpriv_argv(who) + helper, dict(env)


def failure(stderr: bytes) -> str:
    """The reason when the helper or setpriv (not the command) failed, else ''."""
    text = stderr.decode(errors="replace").strip()
    if text.startswith(ERROR_PREFIX):
        reason = text.removeprefix(ERROR_PREFIX)
        return reason + (PTRACE_HINT if "Permission denied" in reason else "")
    if text.startswith("setpriv: "):
        return text
    return ""


class ChrootBackend:
    name = "chroot"

    def __init__(self, *, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root

    def run(self, request: base.ExecRequest) -> base.ExecResult:
        pid = request.target.pid
        prefix, env = prepare(pid, env=dict(request.env), cwd=request.cwd,
                              proc_root=self.proc_root)
        argv = base.effective_argv(request)
        result = capture.run_process(prefix + argv, timeout=request.timeout,
                                     max_output=request.max_output, stdin=request.stdin,
                                     env=env, cancel=request.cancel)
        reason = failure(result.stderr) if result.exit_code in (1, 126, 127) else ""
        if reason:
            raise base.OperationError(f"cannot run {argv[0]!r} in pid {pid}'s container: "
                                      f"{reason}")
        return result


def read_as_owner(path: str, pid: int, *, proc_root: str = "/proc",
                  timeout: float = 5.0) -> bytes:
    """A /proc file of pid read as pid's owner (e.g. `environ`, which the ptrace access
    check hides from a caller with another uid and no CAP_SYS_PTRACE); b'' if unreadable."""
    try:
        argv = setpriv_argv(owner(pid, proc_root=proc_root), keep_chroot=False)
    except base.OperationError:
        return b""
    reader = "import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read())"
    try:
        done = subprocess.run([*argv, sys.executable, "-I", "-S", "-c", reader, path],
                              capture_output=True, timeout=timeout, env={})
    except (OSError, subprocess.SubprocessError):
        return b""
    return done.stdout if done.returncode == 0 else b""
