"""Run a child process to completion with a timeout and a cap on captured output."""

from __future__ import annotations

import os
import selectors
import subprocess
import threading
import time
from collections.abc import Sequence

from coral_lib.ops import base, procgroup


def run_process(
    argv: Sequence[str],
    *,
    timeout: float,
    max_output: int,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    cancel: threading.Event | None = None,
) -> base.ExecResult:
    """Start argv, feed stdin, read both streams up to max_output each (never more than
    base.HARD_MAX_OUTPUT), kill its whole session on timeout or when `cancel` is set.

    The command leads a new session that the agent's guardian kills if the agent dies
    while it runs (see ops/procgroup.py). No preexec_fn: the agent calls this from gRPC
    handlers, and a child that runs Python before exec is forked, not vfork'd, so grpcio's
    fork handlers run in it and abort it now and then while other threads are in gRPC."""
    max_output = min(max_output, base.HARD_MAX_OUTPUT)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=cwd or None, start_new_session=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise base.OperationError(f"cannot start {argv[0]!r}: {exc}") from exc
    procgroup.watch(proc.pid)
    try:
        # fed from a thread: a command that does not read its input must still time out
        feeder = threading.Thread(target=_feed_stdin, args=(proc, stdin), daemon=True)
        feeder.start()
        out, err, truncated, stopped = _collect(proc, timeout=timeout, max_output=max_output,
                                                cancel=cancel)
        code = proc.wait()
        feeder.join(5)
    finally:
        procgroup.unwatch(proc.pid)
    return base.ExecResult(
        exit_code=code if code >= 0 else 128 - code, stdout=out, stderr=err,
        duration=time.monotonic() - start, truncated=truncated,
        timed_out=stopped == "timeout",
        error="cancelled by the operator" if stopped == "cancelled" else "",
    )


def _feed_stdin(proc: subprocess.Popen, data: bytes) -> None:
    try:
        if data:
            proc.stdin.write(data)
        proc.stdin.close()
    except (BrokenPipeError, ValueError):  # the command ended (or was killed) first
        pass


def _collect(proc: subprocess.Popen, *, timeout: float, max_output: int,
             cancel: threading.Event | None):
    buffers = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    truncated, stopped = False, ""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        for stream in buffers:
            sel.register(stream, selectors.EVENT_READ)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (cancel is not None and cancel.is_set()):
                stopped = "timeout" if remaining <= 0 else "cancelled"
                procgroup.kill_session(proc.pid)
                break
            for key, _ in sel.select(timeout=min(remaining, 0.2)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = buffers[key.fileobj]
                room = max_output - len(buf)
                truncated |= len(chunk) > room
                buf.extend(chunk[:max(room, 0)])
    for stream in buffers:
        stream.close()
    return bytes(buffers[proc.stdout]), bytes(buffers[proc.stderr]), truncated, stopped
