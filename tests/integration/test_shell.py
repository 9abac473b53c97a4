"""Issue 3 acceptance (host agent path): `coral shell` round-trips input, resize, Ctrl-C and
the remote exit code, through the colony, with audit rows."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

from coral_lib import client
from coral_lib._proto.coral.agent.v1 import agent_pb2
from tests.support import coral_procs


def _collect(outputs) -> tuple[bytes, int | None]:
    data, code = b"", None
    for out in outputs:
        kind = out.WhichOneof("output")
        if kind == "data":
            data += out.data
        elif kind == "exit_code":
            code = out.exit_code
        elif kind == "error":
            raise AssertionError(out.error)
    return data, code


def test_shell_round_trips_input_resize_and_exit_code(colony, fleet):
    def inputs():
        yield agent_pb2.ShellInput(resize=agent_pb2.Resize(rows=33, cols=101))
        time.sleep(0.3)
        yield agent_pb2.ShellInput(stdin=b"stty size; echo marker-$((6*7))\n")
        time.sleep(0.5)
        yield agent_pb2.ShellInput(stdin=b"exit 7\n")

    with colony.client() as c:
        data, code = _collect(c.shell(client.Targeting(agent="web-1"), inputs=inputs()))
    assert b"33 101" in data and b"marker-42" in data
    assert code == 7
    with colony.client() as c:
        records = c.audit()
    start = [r for r in records if r["kind"] == "started" and r["verb"] == "shell"]
    end = [r for r in records if r["kind"] == "finished" and r["op_id"] == start[0]["op_id"]]
    assert start[0]["command"] == "/bin/sh" and end[0]["exit_code"] == 7


def test_shell_needs_exactly_one_target(colony, fleet):
    with colony.client() as c:
        try:
            _collect(c.shell(client.Targeting(all=True), inputs=iter(())))
        except client.InvalidRequest as exc:
            assert "exactly one target; 2 matched" in str(exc)
        else:
            raise AssertionError("a shell on two targets was accepted")


def _read_until(fd: int, needle: bytes, timeout: float = 15.0) -> bytes:
    seen, deadline = b"", time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


def test_cli_shell_on_a_terminal_ctrl_c_reaches_the_remote_process(colony, fleet):
    master, slave = pty.openpty()
    proc = subprocess.Popen([*coral_procs.CORAL, "shell", "--agent", "web-1"], stdin=slave,
                            stdout=slave, stderr=slave, start_new_session=True,
                            env={**os.environ, **colony.operator_env, "TERM": "dumb"})
    os.close(slave)
    try:
        os.write(master, b"echo ready-$((1+1))\r")
        assert b"ready-2" in _read_until(master, b"ready-2")
        os.write(master, b"sleep 60; echo not-interrupted\r")
        time.sleep(1.0)
        os.write(master, b"\x03")  # Ctrl-C in raw mode: a byte the remote PTY turns into SIGINT
        os.write(master, b"echo after-$((2+3))\r")
        began = time.monotonic()
        out = _read_until(master, b"after-5")
        # the typed line echoes once; an uninterrupted sleep would print the word a second time
        assert b"after-5" in out and out.count(b"not-interrupted") == 1
        assert time.monotonic() - began < 30
        os.write(master, b"exit 3\r")
        _read_until(master, b"\x00", timeout=3)
        assert proc.wait(15) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
