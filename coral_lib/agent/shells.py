"""Interactive shells carried over the agent's link: one PTY session per operation id."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.agent import handlers as handlers_mod
from coral_lib.ops import base

if TYPE_CHECKING:
    from coral_lib.ops import pty_session

log = logging.getLogger(__name__)
EOT = b"\x04"  # what a terminal sends for Ctrl-D: end of input for the remote program


class ShellOps:
    def __init__(self, handlers: handlers_mod.Handlers,
                 send: Callable[[mesh_pb2.AgentMessage], None]) -> None:
        self.handlers, self.send = handlers, send
        self._sessions: dict[str, pty_session.PtySession] = {}
        self._lock = threading.Lock()

    def handle(self, op_id: str, message: agent_pb2.ShellInput) -> None:
        kind = message.WhichOneof("input")
        if kind == "start":
            self._start(op_id, message.start)
            return
        with self._lock:
            session = self._sessions.get(op_id)
        if session is None:
            return  # input after the shell ended: nothing to deliver it to
        try:
            if kind == "stdin":
                session.write(message.stdin)
            elif kind == "resize":
                session.resize(message.resize.rows, message.resize.cols)
            elif kind == "signal":
                session.send_signal(message.signal)
            elif kind == "close_stdin":
                session.write(EOT)
        except (OSError, base.OperationError) as exc:
            log.debug("shell %s: %s", op_id, exc)

    def cancel(self, op_id: str) -> None:
        with self._lock:
            session = self._sessions.pop(op_id, None)
        if session is not None:
            session.close()

    def close_all(self) -> None:
        with self._lock:
            op_ids = list(self._sessions)
        for op_id in op_ids:
            self.cancel(op_id)

    def _reply(self, op_id: str, **output) -> None:
        self.send(mesh_pb2.AgentMessage(op_id=op_id, shell=agent_pb2.ShellOutput(**output)))

    def _start(self, op_id: str, start: agent_pb2.ShellStart) -> None:
        try:
            session = self.handlers.shell(
                start, on_entered=lambda entered: self._reply(op_id, entered=entered))
        except base.OperationError as exc:
            self._reply(op_id, error=str(exc))
            return
        with self._lock:
            self._sessions[op_id] = session
        threading.Thread(target=self._pump, args=(op_id, session), daemon=True,
                         name=f"shell-{op_id}").start()

    def _pump(self, op_id: str, session: pty_session.PtySession) -> None:
        try:
            while not session.eof:
                data = session.read(timeout=0.2)
                if data:
                    self._reply(op_id, data=data)
            code = session.close()
        except OSError as exc:
            self._reply(op_id, error=f"shell failed: {exc}")
            return
        finally:
            with self._lock:
                self._sessions.pop(op_id, None)
        self._reply(op_id, exit_code=code)
