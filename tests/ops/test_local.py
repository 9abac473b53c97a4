"""Argv handling, timeouts and output caps of the local backend (real processes)."""

from __future__ import annotations

import pytest

from coral_lib.ops import base, local
from tests.support import grpcbusy

EXECS_WHILE_BUSY = 300


def run(argv, **kw) -> base.ExecResult:
    return local.LocalBackend().run(base.ExecRequest(argv=argv, **kw))


def test_argv_runs_without_a_shell():
    result = run(["echo", "$HOME", ";", "id"])
    assert result.stdout == b"$HOME ; id\n" and result.exit_code == 0


def test_shell_only_when_asked():
    assert base.effective_argv(base.ExecRequest(argv=["echo a; echo b"], shell=True)) == [
        "/bin/sh", "-c", "echo a; echo b"]
    assert run(["echo a; exit 5"], shell=True).exit_code == 5


def test_exit_code_stderr_and_stdin():
    result = run(["sh", "-c", "cat; echo oops >&2; exit 3"], stdin=b"in\n")
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"in\n", b"oops\n")


def test_timeout_kills_the_whole_process_group():
    result = run(["sh", "-c", "sleep 30 & sleep 30"], timeout=0.5)
    assert result.timed_out and result.duration < 5


def test_output_cap_sets_truncated():
    result = run(["head", "-c", "100000", "/dev/zero"], max_output=1024)
    assert result.truncated and len(result.stdout) == 1024


def test_missing_program_is_a_clear_error():
    with pytest.raises(base.OperationError, match="cannot start 'no-such-program-x'"):
        run(["no-such-program-x"])


def test_commands_run_while_the_agent_serves_grpc():
    """The agent starts commands from gRPC handlers while other threads are in gRPC. A
    child forked with Python code before exec (a preexec_fn) there is aborted by grpcio's
    fork handlers now and then; run_process must start children without one."""
    with grpcbusy.busy():
        codes = [run(["true"]).exit_code for _ in range(EXECS_WHILE_BUSY)]
    assert codes == [0] * EXECS_WHILE_BUSY
