"""Operation handlers shared by the agent's link to the colony and its local socket.

Each handler takes protobuf requests and returns protobuf replies; which backend runs a
command is decided once, at start, by the agent's runtime mode (see agent/modes.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib.ops import base, pty_session

log = logging.getLogger(__name__)

Resolver = Callable[[base.ExecRequest], tuple[base.ExecBackend, base.ExecRequest]]


@dataclasses.dataclass
class Handlers:
    runtime: agent_pb2.RuntimeContext
    resolve: Resolver  # picks the backend and fills the target details (pid, container id)
    tap_runner: Callable[[agent_pb2.TapRequest], Iterator[agent_pb2.TapEvent]] | None = None

    def exec(self, request: agent_pb2.ExecRequest) -> agent_pb2.ExecResult:
        if not request.argv:
            return agent_pb2.ExecResult(exit_code=-1, error="empty command: give argv")
        if not self.runtime.can_exec.available:
            return agent_pb2.ExecResult(
                exit_code=-1, error=f"exec not available here: {self.runtime.can_exec.reason}")
        try:
            backend, req = self.resolve(exec_request_from_proto(request))
            log.info("exec %s via %s target=%s", list(req.argv), backend.name, req.target)
            return exec_result_to_proto(backend.run(req))
        except base.OperationError as exc:
            return agent_pb2.ExecResult(exit_code=-1, error=str(exc))


    def shell(self, start: agent_pb2.ShellStart) -> pty_session.PtySession:
        """Start an interactive command on a PTY in the target (the agent's host if none)."""
        if not self.runtime.can_shell.available:
            raise base.OperationError(f"shell not available here: {self.runtime.can_shell.reason}")
        argv = list(start.argv) or ["/bin/sh"]
        probe = exec_request_from_proto(agent_pb2.ExecRequest(argv=argv, target=start.target))
        backend, request = self.resolve(probe)
        if not request.target.pid and backend.name != "local":
            raise base.OperationError(f"shell needs a process to enter; the {backend.name} "
                                      "backend found none for this target")
        env = {"TERM": start.term or "xterm", **dict(start.env)}
        log.info("shell %s target=%s", argv, request.target)
        return pty_session.PtySession.spawn(
            argv, target_pid=request.target.pid or None, env=env,
            rows=start.rows or 24, cols=start.cols or 80)


def exec_request_from_proto(msg: agent_pb2.ExecRequest) -> base.ExecRequest:
    return base.ExecRequest(
        argv=list(msg.argv), shell=msg.shell, timeout=msg.timeout_seconds or 30.0,
        max_output=msg.max_output_bytes or base.DEFAULT_MAX_OUTPUT, env=dict(msg.env),
        cwd=msg.cwd, stdin=msg.stdin,
        target=base.ExecTarget(
            namespace=msg.target.namespace, pod_name=msg.target.pod_name,
            container_name=msg.target.container_name, container_id=msg.target.container_id,
        ),
    )


def exec_result_to_proto(result: base.ExecResult) -> agent_pb2.ExecResult:
    return agent_pb2.ExecResult(
        exit_code=result.exit_code, stdout=result.stdout, stderr=result.stderr,
        duration_seconds=result.duration, truncated=result.truncated,
        timed_out=result.timed_out, error=result.error,
    )
