"""Issue 3 acceptance: a PTY shell round-trips input, resize and the exit code, inside
the chosen container; Ctrl-C and signals reach the remote foreground process."""

from __future__ import annotations

import signal
import time

import pytest

from coral_lib.ops import base, pty_session
from tests.sidecar import conftest


def _until(session: pty_session.PtySession, needle: bytes, *, timeout: float = 10) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out and time.monotonic() < deadline and not session.eof:
        out += session.read(0.1)
    assert needle in out, out
    return out


@pytest.fixture
def web_shell(shop_pod):
    session = pty_session.PtySession.spawn(
        ["/bin/sh"], target_pid=shop_pod.containers["web"].host_pid, rows=24, cols=80)
    yield session
    session.close()


def test_shell_round_trips_input_resize_and_exit_code(web_shell):
    web_shell.write(b"cat /srv/coral-marker; echo; hostname; echo $OTEL_SERVICE_NAME\n")
    out = _until(web_shell, b"checkout\r\n")
    assert b"web\r\nshop-7d9f\r\n" in out  # inside the container, with the pod's hostname
    web_shell.write(b"stty size\n")
    _until(web_shell, b"24 80")
    web_shell.resize(50, 132)
    web_shell.write(b"stty size\n")
    _until(web_shell, b"50 132")
    web_shell.write(b"exit 7\n")
    assert web_shell.wait(10) == 7


def test_ctrl_c_and_signals_reach_the_remote_foreground_process(web_shell):
    # An interactive shell drops the rest of a line whose command died of a signal, so
    # the status is asked for on the next line.
    web_shell.write(b"sleep 1000\n")
    time.sleep(0.3)
    web_shell.write(b"\x03")  # Ctrl-C through the line discipline
    web_shell.write(b"echo after-$?\n")
    _until(web_shell, b"after-130")
    web_shell.write(b"sleep 1000\n")
    time.sleep(0.3)
    web_shell.send_signal(signal.SIGTERM)
    web_shell.write(b"echo after-$?\n")
    _until(web_shell, b"after-143")


def test_shell_killed_remotely_reports_the_signal(shop_pod):
    session = pty_session.PtySession.spawn(["sh", "-c", "kill -9 $$"],
                                           target_pid=shop_pod.containers["cache"].host_pid)
    try:
        assert session.wait(10) == 128 + signal.SIGKILL
    finally:
        session.close()


def test_close_hangs_up_a_running_shell(web_shell):
    web_shell.write(b"echo ready\n")
    _until(web_shell, b"ready\r\n# ")  # the output, not just the terminal's echo
    assert web_shell.close() in (128 + signal.SIGHUP, 128 + signal.SIGKILL)


def test_close_right_after_spawn_never_signals_the_caller(shop_pod):
    """Before the child owns the terminal there is no foreground group to signal."""
    session = pty_session.PtySession.spawn(["/bin/sh"],
                                           target_pid=shop_pod.containers["web"].host_pid)
    assert session.close() > 0  # and this test process is still alive


def test_local_pty_without_target(tmp_path):
    session = pty_session.PtySession.spawn(["sh", "-c", "pwd; stty size; exit 4"],
                                           cwd=str(tmp_path), rows=10, cols=33)
    try:
        out = _until(session, b"10 33")
        assert str(tmp_path).encode() in out
        assert session.wait(10) == 4
        while not session.eof:
            session.read(0.1)
    finally:
        session.close()


def test_bad_shell_input_is_a_clear_error(web_shell):
    with pytest.raises(base.OperationError, match="out of range"):
        web_shell.resize(0, 80)
    with pytest.raises(base.OperationError, match="needs a command"):
        pty_session.PtySession.spawn([])


def test_shell_from_a_sidecar_agent_inside_the_pod(shop_pod):
    """The agent in its own container opens a shell in "cache" with pod-local pids."""
    answer = conftest.run_probe(shop_pod, "shell", "cache",
                                "cat /srv/coral-marker; echo; stty size; exit 5\n")
    assert "cache\r\n33 99\r\n" in answer["output"]
    assert answer["exit_code"] == 5


def test_close_after_end_of_output_keeps_the_exit_code(shop_pod):
    """The agent's stream loop reads until EOF then closes: the code must survive that."""
    for _ in range(5):
        session = pty_session.PtySession.spawn(
            ["sh", "-c", "echo bye; exit 9"], target_pid=shop_pod.containers["web"].host_pid)
        while not session.eof:
            session.read(0.1)
        assert session.close() == 9


def test_close_from_the_output_pump_and_a_cancel_at_once_closes_the_terminal_once(tmp_path):
    """A cancel arriving while the output pump closes the ended shell: both calls return
    the exit code, the terminal's descriptor is closed exactly once. (A second os.close
    killed the agent's link thread with EBADF, or could close a reused descriptor.)"""
    import os
    import threading

    session = pty_session.PtySession.spawn(["sh", "-c", "trap '' HUP; sleep 30"])
    fd = session.master_fd
    start, codes, errors = threading.Barrier(4), [], []

    def close() -> None:
        start.wait()
        try:
            codes.append(session.close(grace=0.3))
        except Exception as exc:  # noqa: BLE001 - the assertion below names it
            errors.append(exc)
    threads = [threading.Thread(target=close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # SIGHUP ends it when close() comes before the shell set its trap, else SIGKILL
    assert errors == [] and len(set(codes)) == 1 and len(codes) == 4
    assert codes[0] in (128 + signal.SIGHUP, 128 + signal.SIGKILL)
    spare = os.open(os.devnull, os.O_RDONLY)  # likely reuses the terminal's number
    try:
        assert session.close() == codes[0]
        os.fstat(spare)  # a late close must not have closed this descriptor
    finally:
        os.close(spare)
    assert fd >= 0
