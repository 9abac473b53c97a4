"""Run a child process to completion with a timeout and a cap on captured output."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Sequence

from coral_lib.ops import base


def run_process(
    argv: Sequence[str],
    *,
    timeout: float,
    max_output: int,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> base.ExecResult:
    """Start argv, feed stdin, read both streams up to max_output each, kill on timeout."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=cwd or None, preexec_fn=preexec_fn, start_new_session=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise base.OperationError(f"cannot start {argv[0]!r}: {exc}") from exc
    _feed_stdin(proc, stdin)
    out, err, truncated, timed_out = _collect(proc, timeout=timeout, max_output=max_output)
    code = proc.wait()
    return base.ExecResult(
        exit_code=code if code >= 0 else 128 - code, stdout=out, stderr=err,
        duration=time.monotonic() - start, truncated=truncated, timed_out=timed_out,
    )


def _feed_stdin(proc: subprocess.Popen, data: bytes) -> None:
    try:
        if data:
            proc.stdin.write(data)
        proc.stdin.close()
    except BrokenPipeError:
        pass


def _collect(proc: subprocess.Popen, *, timeout: float, max_output: int):
    buffers = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    truncated = timed_out = False
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        for stream in buffers:
            sel.register(stream, selectors.EVENT_READ)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                _kill_group(proc)
                break
            for key, _ in sel.select(timeout=min(remaining, 0.5)):
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
    return bytes(buffers[proc.stdout]), bytes(buffers[proc.stderr]), truncated, timed_out


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
