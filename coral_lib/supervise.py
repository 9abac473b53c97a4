"""A small process supervisor for machines without systemd.

`run_supervisor` keeps one child process alive (restart with backoff) and owns a pid
file for its whole life; `start` launches it detached and waits until the pid file
names it; `stop` ends it (TERM, then KILL after a grace period); `status` tells whether
it runs. The pid file is held with an exclusive flock by the running supervisor, so a
stale file (crash, reboot, reused pid) is never mistaken for a running supervisor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import psutil

RESTART_POLICIES = ("always", "on-failure", "never")
STABLE_AFTER = 10.0  # a child that ran this long resets the backoff
STOP_GRACE = 10.0


class SupervisorError(Exception):
    """A user-visible failure (bad pid file path, supervisor did not come up, ...)."""


@dataclasses.dataclass(frozen=True)
class Status:
    running: bool
    pid: int | None = None
    argv: tuple[str, ...] = ()  # the supervised command, as recorded in the supervisor's cmdline


# ---- pure decisions ------------------------------------------------------------------


def should_restart(*, policy: str, exit_code: int) -> bool:
    """Whether the child is started again after it exited with exit_code."""
    if policy not in RESTART_POLICIES:
        raise ValueError(f"invalid restart policy {policy!r}: expected one of {RESTART_POLICIES}")
    if policy == "always":
        return True
    return policy == "on-failure" and exit_code != 0


def backoff(failures: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Delay before the next start after `failures` quick exits in a row (exponential)."""
    if failures <= 0:
        return 0.0
    return min(cap, base * (2 ** min(failures - 1, 16)))


def supervised_argv(cmdline: Sequence[str]) -> tuple[str, ...]:
    """The child argv recorded after `--` in a supervisor's command line."""
    parts = list(cmdline)
    return tuple(parts[parts.index("--") + 1:]) if "--" in parts else ()


def recorded_grace(cmdline: Sequence[str]) -> float:
    """The --stop-grace a supervisor was started with (its own options precede `--`)."""
    parts = list(cmdline)
    own = parts[:parts.index("--")] if "--" in parts else parts
    if "--stop-grace" in own[:-1]:
        try:
            return float(own[own.index("--stop-grace") + 1])
        except ValueError:
            pass
    return STOP_GRACE


# ---- pid file ------------------------------------------------------------------------


def status(pid_file: str) -> Status:
    """Running when some process holds the pid file's lock; never trusts a bare pid."""
    try:
        fd = os.open(pid_file, os.O_RDONLY)
    except FileNotFoundError:
        return Status(running=False)
    except OSError as exc:
        raise SupervisorError(f"cannot read pid file {pid_file}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            pid = _read_pid(fd)
            for _ in range(20):  # the holder writes its pid right after locking
                if pid is not None:
                    break
                time.sleep(0.01)
                pid = _read_pid(fd)
            return Status(running=True, pid=pid, argv=_argv_of(pid))
        return Status(running=False, pid=_read_pid(fd))
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 64, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _argv_of(pid: int | None) -> tuple[str, ...]:
    if pid is None:
        return ()
    try:
        return supervised_argv(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ()


def _claim_pid_file(pid_file: str) -> int:
    """Create and lock the pid file for this process; fail when another supervisor has it."""
    try:
        fd = os.open(pid_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise SupervisorError(f"cannot open pid file {pid_file}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise SupervisorError(f"pid file {pid_file} is held by a running supervisor") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


# ---- the supervisor itself (runs in the foreground) ------------------------------------


def run_supervisor(
    *, name: str, argv: Sequence[str], pid_file: str, restart: str = "always",
    stop_grace: float = STOP_GRACE,
) -> int:
    """Keep argv running until TERM/INT; returns the exit code to leave with.

    Child output goes wherever this process's stdout/stderr go (the log file under `start`).
    """
    should_restart(policy=restart, exit_code=0)  # validate the policy before claiming
    fd = _claim_pid_file(pid_file)
    stopping = threading.Event()

    def on_signal(_signum, _frame):
        stopping.set()  # _wait notices within 0.2 s and passes TERM on to the child

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        return _loop(name=name, argv=argv, restart=restart, stopping=stopping,
                     stop_grace=stop_grace)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_file)
        os.close(fd)


def _loop(*, name: str, argv: Sequence[str], restart: str, stopping: threading.Event,
          stop_grace: float) -> int:
    failures = 0
    code = 0
    while not stopping.is_set():
        began = time.monotonic()
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            _log(name, f"cannot start {argv[0]!r}: {exc.strerror}")
            code = 127
        else:
            _log(name, f"started pid {proc.pid}: {' '.join(argv)}")
            code = _wait(proc, stopping=stopping, grace=stop_grace)
        if stopping.is_set():
            break
        _log(name, f"child exited with code {code}")
        if not should_restart(policy=restart, exit_code=code):
            return code
        failures = 0 if time.monotonic() - began >= STABLE_AFTER else failures + 1
        delay = backoff(failures)
        _log(name, f"restarting in {delay:g}s")
        stopping.wait(delay)
    _log(name, "stopped")
    return 0


def _wait(proc: subprocess.Popen, *, stopping: threading.Event, grace: float) -> int:
    """Wait for the child; once stopping, TERM its group, then KILL it after `grace` seconds."""
    deadline = None
    while True:
        try:
            code = proc.wait(timeout=0.2)
            return code if code >= 0 else 128 - code
        except subprocess.TimeoutExpired:
            pass
        if stopping.is_set() and deadline is None:
            deadline = time.monotonic() + grace
            _signal_group(proc.pid, signal.SIGTERM)
        elif deadline is not None and time.monotonic() >= deadline:
            _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _log(name: str, message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(f"{stamp} coral-daemon[{name}] {message}", file=sys.stderr, flush=True)


# ---- control from the outside -------------------------------------------------------


def start(
    *, name: str, argv: Sequence[str], pid_file: str, log_file: str, restart: str = "always",
    stop_grace: float = STOP_GRACE, wait: float = 10.0,
) -> tuple[Status, bool]:
    """Ensure a supervisor runs argv; returns (status, changed).

    Already running with the same argv: nothing happens. Running with another argv: it is
    stopped and started again with the new one.
    """
    if not argv:
        raise SupervisorError("no command given to supervise (expected: -- ARGV...)")
    should_restart(policy=restart, exit_code=0)
    current = status(pid_file)
    if current.running and current.argv == tuple(argv):
        return current, False
    if current.running:
        stop(pid_file)
    cmd = [sys.executable, "-m", "coral_lib.commands.daemon", "--name", name,
           "--pid-file", os.path.abspath(pid_file), "--restart", restart,
           "--stop-grace", f"{stop_grace:g}", "--", *argv]
    try:
        for path in (pid_file, log_file):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(log_file, "ab", buffering=0) as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, cwd="/")
    except OSError as exc:
        raise SupervisorError(f"cannot prepare {exc.filename or pid_file}: {exc.strerror}") from exc
    return _await_ready(proc, pid_file=pid_file, log_file=log_file, wait=wait), True


def _await_ready(proc: subprocess.Popen, *, pid_file: str, log_file: str, wait: float) -> Status:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        current = status(pid_file)
        if current.running and current.pid == proc.pid:
            return current
        if proc.poll() is not None:
            raise SupervisorError(
                f"supervisor exited with code {proc.returncode} before it was ready; "
                f"see {log_file}")
        time.sleep(0.05)
    raise SupervisorError(f"supervisor did not write {pid_file} within {wait:g}s; see {log_file}")


def stop(pid_file: str) -> bool:
    """Stop the supervisor and its child; returns whether anything was running.

    The supervisor gets its child's --stop-grace plus a margin to finish before both are
    killed outright.
    """
    current = status(pid_file)
    if not current.running or current.pid is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_file)  # stale: nobody holds it
        return False
    try:
        supervisor = psutil.Process(current.pid)
        family = [supervisor, *supervisor.children(recursive=True)]
        grace = recorded_grace(supervisor.cmdline()) + 5.0
    except psutil.NoSuchProcess:
        return False
    supervisor.terminate()
    _, alive = psutil.wait_procs([supervisor], timeout=grace)
    if alive:  # a wedged supervisor: take the whole family down
        for proc in family:
            with contextlib.suppress(psutil.Error):
                proc.kill()
    psutil.wait_procs(family, timeout=5)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pid_file)
    return True
