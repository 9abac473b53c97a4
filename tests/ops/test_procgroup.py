"""Commands end as a whole session on cancel, and the agent's size limits (real processes)."""

from __future__ import annotations

import os
import threading
import uuid

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib.agent import handlers
from coral_lib.ops import base, local, procgroup
from tests.support import coral_procs


def _sleepers(marker: str) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    if f"sleep\0{marker}".encode() in fh.read():
                        pids.append(int(name))
            except OSError:
                pass
    return [p for p in pids if not procgroup._is_zombie(p)]


def test_cancel_kills_the_command_and_its_grandchildren():
    marker = f"303.{uuid.uuid4().int % 10**9}"
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    result = local.LocalBackend().run(base.ExecRequest(
        argv=["sh", "-c", f"sleep {marker} & wait"], timeout=60, cancel=cancel))
    assert result.error == "cancelled by the operator" and result.duration < 10
    coral_procs.wait_for(lambda: not _sleepers(marker), timeout=5, what="sleep killed")


def test_output_is_capped_below_the_link_limit_whatever_is_asked():
    request = handlers.exec_request_from_proto(
        agent_pb2.ExecRequest(argv=["true"], max_output_bytes=1 << 40))
    assert request.max_output == base.HARD_MAX_OUTPUT < (256 << 20) // 2


def test_oversized_command_line_is_an_error_result_not_a_crash():
    runtime = agent_pb2.RuntimeContext()
    runtime.can_exec.available = True
    h = handlers.Handlers(runtime=runtime, resolve=lambda r: (local.LocalBackend(), r))
    result = h.exec(agent_pb2.ExecRequest(argv=["echo", "x" * (4 << 20)]))
    assert result.exit_code == -1 and "command line too long" in result.error


def test_timeout_applies_to_a_command_that_never_reads_its_large_stdin():
    result = local.LocalBackend().run(base.ExecRequest(
        argv=["sleep", "30"], timeout=0.5, stdin=b"x" * (4 << 20)))
    assert result.timed_out and result.duration < 10
