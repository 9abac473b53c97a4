"""Commands die with their agent, and on cancel or timeout, grandchildren included.

Every command an agent runs starts as the leader of a new session (and process group), so
"the command" is everything in that session, including what it forked (`sleep 300 & wait`).

* `kill_session(sid)`: SIGTERM to every process of the session, then SIGKILL to what is
  left after a grace period. Used on timeout and on operator cancel.
* A guardian process (`python -m coral_lib.ops.procgroup`, one per agent, started on first
  use) is told the sessions the agent runs over a pipe. When the agent dies — even by
  SIGKILL, which leaves no chance to clean up — the pipe reaches end-of-file and the
  guardian kills every session still registered. A kernel parent-death signal
  (PR_SET_PDEATHSIG) alone would reach only the direct child, never its children, and
  setting it needs Python code between fork and exec in a threaded server, which is unsafe.

A process that leaves its session on purpose (setsid, a daemon) escapes, as it would from
any supervisor short of a cgroup.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

GRACE = 2.0  # seconds between SIGTERM and SIGKILL


def _stat_fields(pid: str, proc_root: str) -> tuple[int, int] | None:
    """(process group, session) of pid, or None when it is gone."""
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()  # state ppid pgrp session ...
    try:
        return int(fields[2]), int(fields[3])
    except (IndexError, ValueError):
        return None


def session_members(sid: int, *, proc_root: str = "/proc") -> list[int]:
    """Pids whose session or process group is sid (the leader included while alive)."""
    members = []
    for name in os.listdir(proc_root):
        if name.isdigit():
            ids = _stat_fields(name, proc_root)
            if ids is not None and sid in ids:
                members.append(int(name))
    return members


def _signal_all(sid: int, sig: int) -> list[int]:
    pids = session_members(sid)
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    return pids


def kill_session(sid: int, *, grace: float = GRACE) -> None:
    """SIGTERM the whole session, then SIGKILL whatever still runs after `grace` seconds."""
    kill_sessions([sid], grace=grace)


def kill_sessions(sids: list[int], *, grace: float = GRACE) -> None:
    """kill_session for several sessions at once: one grace period for all of them."""
    sids = [sid for sid in sids if sid > 1 and sid != os.getsid(0)]  # never init's or ours
    if not [pid for sid in sids for pid in _signal_all(sid, signal.SIGTERM)]:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        # zombies (not yet reaped by their parent) still show up; they are harmless
        if all(_is_zombie(pid) for sid in sids for pid in session_members(sid)):
            break
        time.sleep(0.05)
    for sid in sids:
        _signal_all(sid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return True
    return data[data.rfind(b")") + 2:data.rfind(b")") + 3] in (b"Z", b"X")


class Guardian:
    """The agent's side of the guardian: watch(sid) / unwatch(sid) over a pipe."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _send(self, line: str) -> None:
        with self._lock:
            for _ in range(2):  # restart a guardian that died, once
                if self._proc is None or self._proc.poll() is not None:
                    self._proc = subprocess.Popen(
                        [sys.executable, "-m", "coral_lib.ops.procgroup"],
                        stdin=subprocess.PIPE, start_new_session=True)
                try:
                    self._proc.stdin.write(line.encode())
                    self._proc.stdin.flush()
                    return
                except (BrokenPipeError, OSError):
                    self._proc = None

    def watch(self, sid: int) -> None:
        self._send(f"+{sid}\n")

    def unwatch(self, sid: int) -> None:
        self._send(f"-{sid}\n")


_guardian = Guardian()


def watch(sid: int) -> None:
    """Kill session sid if this process dies before unwatch(sid)."""
    try:
        _guardian.watch(sid)
    except OSError:
        pass  # no guardian (cannot start Python?): the command still runs, unguarded


def unwatch(sid: int) -> None:
    try:
        _guardian.unwatch(sid)
    except OSError:
        pass


def _guard(stream) -> None:
    """Guardian main loop: track sessions; on end of input (the agent is gone) kill them."""
    watched: set[int] = set()

    def kill_all(*_args) -> None:
        kill_sessions(sorted(watched))
        os._exit(0)

    signal.signal(signal.SIGTERM, kill_all)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    for line in stream:
        sign, value = line[:1], line[1:].strip()
        if value.isdigit():
            if sign == b"+":
                watched.add(int(value))
            elif sign == b"-":
                watched.discard(int(value))
    kill_all()


if __name__ == "__main__":
    _guard(sys.stdin.buffer)
