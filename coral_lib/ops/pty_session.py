"""An interactive command on a new pseudo-terminal, optionally inside another container.

The child becomes a session leader with the PTY as its controlling terminal through
util-linux `setsid --ctty` (no Python runs between fork and exec, which keeps this safe
inside a threaded gRPC server). In a container the session is made inside its PID
namespace: nsenter --pid (fork) -> setsid --ctty -> nsenter into the other namespaces ->
the command. A session leader outside the PID namespace would leave a job-control shell
with an invisible original process group (dash: "Cannot set tty process group").
Ctrl-C written as input reaches the remote foreground process group through the
terminal's line discipline; resize uses TIOCSWINSZ, on which the kernel sends SIGWINCH
to the foreground process group.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import shutil
import signal
import struct
import subprocess
import termios
import threading
from collections.abc import Mapping, Sequence

from coral_lib.ops import base, chroot, nsenter, procgroup

READ_CHUNK = 65536


def _winsize(rows: int, cols: int) -> bytes:
    return struct.pack("HHHH", rows, cols, 0, 0)


class PtySession:
    def __init__(self, proc: subprocess.Popen, master_fd: int) -> None:
        self.proc = proc
        self.master_fd = master_fd
        self.eof = False
        # close() runs from the output pump and from a cancel at once: the first does the
        # work, the other waits for it (a second os.close could hit a reused descriptor)
        self._closing = threading.Lock()
        self._exit_code: int | None = None

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        *,
        target_pid: int | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str = "",
        rows: int = 24,
        cols: int = 80,
        proc_root: str = "/proc",
        via: str = "nsenter",
    ) -> PtySession:
        """Start argv on a new PTY (in target_pid's container when given, entered the way
        `via` names: "nsenter" its namespaces, or "chroot" -- a sidecar in the same pod --
        its root as its own user)."""
        if not argv:
            raise base.OperationError("shell needs a command to run (e.g. ['/bin/sh'])")
        setsid = shutil.which("setsid")
        if setsid is None:
            raise base.OperationError("the PTY backend needs the setsid binary (util-linux)")
        extra = {"TERM": "xterm", **(env or {})}
        if target_pid and via == "chroot":
            # the PID namespace is the pod's, shared already: setsid needs no detour
            prefix, full_env = chroot.prepare(target_pid, env=extra, cwd=cwd,
                                              proc_root=proc_root)
            argv_full, cwd_arg = [setsid, "--ctty", *prefix, *argv], None
        elif target_pid:
            _, full_env = nsenter.prepare(target_pid, env=extra, cwd=cwd, proc_root=proc_root)
            outer = nsenter.nsenter_argv(target_pid, namespaces=("--pid",), enter_root=False)
            inner_ns = tuple(ns for ns in nsenter.NAMESPACES if ns != "--pid")
            inner = nsenter.nsenter_argv(target_pid, cwd=cwd, proc_root=proc_root,
                                         namespaces=inner_ns)
            argv_full = [*outer, setsid, "--ctty", *inner, *argv]
            cwd_arg = None
        else:
            full_env, cwd_arg = {**os.environ, **extra}, cwd or None
            argv_full = [setsid, "--ctty", *argv]
        master, slave = os.openpty()
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, _winsize(rows, cols))
            # target: a new session for the outer nsenter so close() can kill its group
            proc = subprocess.Popen(
                argv_full, stdin=slave, stdout=slave, stderr=slave, env=full_env, cwd=cwd_arg,
                close_fds=True, start_new_session=bool(target_pid) and via != "chroot",
            )
        except OSError as exc:
            os.close(master)
            raise base.OperationError(f"cannot start {argv[0]!r} on a PTY: {exc}") from exc
        finally:
            os.close(slave)  # the child holds it; EOF on master once the child side closes
        procgroup.watch(proc.pid)  # its session dies with the agent (setsid made it leader)
        return cls(proc, master)

    def fileno(self) -> int:
        """The PTY master, for callers that multiplex with select/selectors."""
        return self.master_fd

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read(self, timeout: float = 0.1) -> bytes:
        """Output available within timeout; b"" on timeout or at end of output (see .eof)."""
        if self.eof:
            return b""
        ready, _, _ = select.select([self.master_fd], [], [], timeout)
        if not ready:
            return b""
        try:
            data = os.read(self.master_fd, READ_CHUNK)
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: every slave fd closed, i.e. end of output
                raise
            data = b""
        self.eof = not data
        return data

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.master_fd, view)
            view = view[written:]

    def resize(self, rows: int, cols: int) -> None:
        if not (0 < rows < 65536 and 0 < cols < 65536):
            raise base.OperationError(f"terminal size {rows}x{cols} out of range 1..65535")
        fcntl.ioctl(self.master_fd, termios.TIOCSWINSZ, _winsize(rows, cols))

    def send_signal(self, sig: int) -> None:
        """Deliver sig to the terminal's foreground process group (the running command)."""
        try:
            pgrp = os.tcgetpgrp(self.master_fd)
        except OSError:
            pgrp = 0
        # 0: no foreground group yet (the child has not taken the terminal) or any more;
        # killpg(0) would signal our own group, so signal our direct child instead.
        if pgrp > 0 and pgrp != os.getpgrp():
            try:
                os.killpg(pgrp, sig)
                return
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float | None = None) -> int:
        """The exit code (128+N when killed by signal N); raises TimeoutError if still running."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"command still running after {timeout}s") from exc
        return code if code >= 0 else 128 - code

    def close(self, *, grace: float = 1.0) -> int:
        """Hang up the terminal, kill what remains, and return the exit code. Safe to call
        from several threads and more than once."""
        with self._closing:
            if self._exit_code is None:
                self._exit_code = self._close(grace)
            return self._exit_code

    def _close(self, grace: float) -> int:
        if self.eof and self.proc.poll() is None:
            try:  # output ended: the command is exiting on its own; keep its exit code
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.send_signal(signal.SIGHUP)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL)
                self.proc.kill()
        if self.master_fd >= 0:
            os.close(self.master_fd)
            self.master_fd = -1
        code = self.wait()
        # what the shell left behind in its session (background jobs) ends with it
        procgroup.kill_session(self.proc.pid, grace=grace)
        procgroup.unwatch(self.proc.pid)
        return code
