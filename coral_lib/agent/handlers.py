"""Operation handlers shared by the agent's link to the colony and its local socket.

Each handler takes protobuf requests and returns protobuf replies; which backend runs a
command is decided once, at start, by the agent's runtime mode (see agent/modes.py).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from coral_lib import logs, redact
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib.ops import base

if TYPE_CHECKING:
    from coral_lib.ops import pcap, pty_session, tap, trace

# The shell, tap and trace backends (ctypes, termios, the BPF filter compiler) load on the
# first operation that uses them: most agents never run one (issue 15, a leaner agent).

log = logging.getLogger(__name__)
# Linux refuses a larger command line anyway (E2BIG); saying so plainly is clearer.
MAX_COMMAND_LINE = 2 << 20

Resolver = Callable[[base.ExecRequest], tuple[base.ExecBackend, base.ExecRequest]]


@dataclasses.dataclass
class Handlers:
    runtime: agent_pb2.RuntimeContext
    resolve: Resolver  # picks the backend and fills the target details (pid, container id)

    def __post_init__(self) -> None:
        if self.runtime.can_trace.available:  # capabilities allow it; can bcc load here?
            ok, reason = trace_available()
            self.runtime.can_trace.available, self.runtime.can_trace.reason = ok, reason

    def exec(self, request: agent_pb2.ExecRequest, *,
             cancel: threading.Event | None = None) -> agent_pb2.ExecResult:
        """Run one command; `cancel` set while it runs kills it (and what it started)."""
        if not request.argv:
            return agent_pb2.ExecResult(exit_code=-1, error="empty command: give argv")
        size = command_line_bytes(request)
        if size > MAX_COMMAND_LINE:
            return agent_pb2.ExecResult(
                exit_code=-1, error=f"command line too long: {size} bytes of argv and env; "
                                    f"this agent accepts at most {MAX_COMMAND_LINE}")
        if not self.runtime.can_exec.available:
            return agent_pb2.ExecResult(
                exit_code=-1, error=f"exec not available here: {self.runtime.can_exec.reason}")
        try:
            backend, req = self.resolve(exec_request_from_proto(request))
            # never argument values: any of them can be a secret the redaction table misses
            where = target_name(req.target)
            log.info("exec %s via %s", redact.describe_argv(req.argv, shell=req.shell),
                     backend.name, extra=logs.fields(target=where))
            if cancel is not None:
                req = dataclasses.replace(req, cancel=cancel)
            result = exec_result_to_proto(backend.run(req))
        except base.OperationError as exc:
            return agent_pb2.ExecResult(exit_code=-1, error=str(exc),
                                        refused=isinstance(exc, base.Refused))
        result.entered.CopyFrom(self.entered(req.target))
        outcome = "timeout" if result.timed_out else f"exit {result.exit_code}"
        log.info("exec finished", extra=logs.fields(target=where, outcome=outcome))
        return result

    def entered(self, target: base.ExecTarget) -> agent_pb2.EnteredTarget:
        """What this agent entered (resolved by its resolver), for the colony's audit."""
        return agent_pb2.EnteredTarget(
            node=self.runtime.node_name or self.runtime.hostname, namespace=target.namespace,
            pod=target.pod_name, container=target.container_name,
            container_id=target.container_id, resolved_by=target.resolved_by or "host")


    def shell(self, start: agent_pb2.ShellStart, *,
              on_entered: Callable[[agent_pb2.EnteredTarget], None] | None = None
              ) -> pty_session.PtySession:
        """Start an interactive command on a PTY in the target (the agent's host if none)."""
        if not self.runtime.can_shell.available:
            raise base.OperationError(f"shell not available here: {self.runtime.can_shell.reason}")
        argv = list(start.argv) or ["/bin/sh"]
        probe = exec_request_from_proto(agent_pb2.ExecRequest(argv=argv, target=start.target))
        backend, request = self.resolve(dataclasses.replace(probe, needs_pid=True))
        if not request.target.pid and backend.name != "local":
            raise base.OperationError(f"shell needs a process to enter; the {backend.name} "
                                      "backend found none for this target")
        from coral_lib.ops import pty_session

        env = {"TERM": start.term or "xterm", **dict(start.env)}
        log.info("shell %s target=%s", redact.describe_argv(argv), request.target)
        session = pty_session.PtySession.spawn(
            argv, target_pid=request.target.pid or None, env=env,
            rows=start.rows or 24, cols=start.cols or 80, via=backend.name)
        if on_entered is not None:
            on_entered(self.entered(request.target))
        return session

    def tap(self, request: agent_pb2.TapRequest, *, on_packet: Callable[[pcap.Packet], None],
            stop, on_entered: Callable[[agent_pb2.EnteredTarget], None] | None = None
            ) -> tap.CaptureSummary:
        """Capture in the target's network namespace (a host agent: its own namespace)."""
        if not self.runtime.can_tap.available:
            raise base.OperationError(f"tap not available here: {self.runtime.can_tap.reason}")
        from coral_lib.ops import tap

        pid = self._target_pid(request.target, what="tap", on_entered=on_entered)
        if self.runtime.exec_backend == "chroot":
            pid = None  # a sidecar: the pod's network namespace is its own already
        log.info("tap filter=%r pid=%s headers_only=%s", request.filter, pid,
                 request.headers_only)
        return tap.capture(
            netns_pid=pid, filter_expr=request.filter,
            duration=request.duration_seconds or 10.0, max_packets=request.max_packets or 1000,
            max_bytes=request.max_bytes or 10 << 20, headers_only=request.headers_only,
            on_packet=on_packet, stop=stop)

    def trace(self, request: agent_pb2.TraceRequest, *, on_event: Callable[[dict], None],
              stop, on_entered: Callable[[agent_pb2.EnteredTarget], None] | None = None
              ) -> trace.TraceSummary:
        """Trace in the target's PID namespace; a host agent traces its whole host."""
        if not self.runtime.can_trace.available:
            raise base.OperationError(f"trace not available here: "
                                      f"{self.runtime.can_trace.reason}")
        from coral_lib.ops import trace

        pid = self._target_pid(request.target, what="trace", on_entered=on_entered)
        pidns = os.stat(f"/proc/{pid}/ns/pid").st_ino if pid else None
        log.info("trace %s pid=%s pidns=%s", request.kind, pid, pidns)
        return trace.run(request.kind or "exec", cgroup_path=None, pidns_inode=pidns,
                         duration=request.duration_seconds or 10.0,
                         max_events=request.max_events or 10000, on_event=on_event, stop=stop)

    def _target_pid(self, target: agent_pb2.ExecTarget, *, what: str,
                    on_entered: Callable[[agent_pb2.EnteredTarget], None] | None
                    ) -> int | None:
        """A process of the target whose namespaces to use; None: the agent's own (host)."""
        probe = exec_request_from_proto(agent_pb2.ExecRequest(argv=["true"], target=target))
        backend, request = self.resolve(dataclasses.replace(probe, needs_pid=True))
        if request.target.pid or backend.name == "local":
            if on_entered is not None:
                on_entered(self.entered(request.target))
            return request.target.pid or None
        raise base.OperationError(f"{what} needs a process to enter; the {backend.name} "
                                  "backend found none for this target")


@functools.lru_cache(maxsize=1)
def trace_available() -> tuple[bool, str]:
    """trace.available() once per process (it only looks at files; bcc is imported by the
    tracer when a trace runs)."""
    from coral_lib.ops import trace

    return trace.available()


def command_line_bytes(msg: agent_pb2.ExecRequest) -> int:
    """What argv and env weigh for execve (each string with its terminating NUL)."""
    return (sum(len(a.encode()) + 1 for a in msg.argv)
            + sum(len(k.encode()) + len(v.encode()) + 2 for k, v in msg.env.items()))


RAW_CONTAINER_ID = ("refused: target.container_id is not accepted; the agent finds the "
                    "container itself from the namespace, pod and container name")


def exec_request_from_proto(msg: agent_pb2.ExecRequest) -> base.ExecRequest:
    """The backend-neutral request. A raw container id is refused, whatever its value, so
    no caller can steer the agent past its target and no error tells whether it exists."""
    if msg.target.container_id:
        raise base.Refused(RAW_CONTAINER_ID)
    return base.ExecRequest(
        argv=list(msg.argv), shell=msg.shell, timeout=msg.timeout_seconds or 30.0,
        max_output=min(msg.max_output_bytes or base.DEFAULT_MAX_OUTPUT, base.HARD_MAX_OUTPUT),
        env=dict(msg.env),
        cwd=msg.cwd, stdin=msg.stdin,
        target=base.ExecTarget(
            namespace=msg.target.namespace, pod_name=msg.target.pod_name,
            container_name=msg.target.container_name,
        ),
    )


def exec_result_to_proto(result: base.ExecResult) -> agent_pb2.ExecResult:
    return agent_pb2.ExecResult(
        exit_code=result.exit_code, stdout=result.stdout, stderr=result.stderr,
        duration_seconds=result.duration, truncated=result.truncated,
        timed_out=result.timed_out, error=result.error,
    )


def target_name(target: base.ExecTarget) -> str:
    """namespace/pod/container, or "host" for the agent's own host (log field `target`)."""
    return "/".join(p for p in (target.namespace, target.pod_name, target.container_name)
                    if p) or "host"
