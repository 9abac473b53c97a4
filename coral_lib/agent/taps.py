"""Streamed operations on the agent's link (tap, trace): one thread per operation id,
events sent back as they come, a summary or an error at the end, cancel on request."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.agent import handlers as handlers_mod
from coral_lib.ops import base

log = logging.getLogger(__name__)


class StreamOps:
    def __init__(self, handlers: handlers_mod.Handlers,
                 send: Callable[[mesh_pb2.AgentMessage], None]) -> None:
        self.handlers, self.send = handlers, send
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def tap(self, op_id: str, request: agent_pb2.TapRequest) -> None:
        self._start(op_id, self._run_tap, request)

    def trace(self, op_id: str, request: agent_pb2.TraceRequest) -> None:
        self._start(op_id, self._run_trace, request)

    def cancel(self, op_id: str) -> bool:
        """Stop the operation; False when no streamed operation has this id."""
        with self._lock:
            stop = self._stops.get(op_id)
        if stop is not None:
            stop.set()
        return stop is not None

    def close_all(self) -> None:
        with self._lock:
            stops = list(self._stops.values())
        for stop in stops:
            stop.set()

    def _start(self, op_id: str, run, request) -> None:
        stop = threading.Event()
        with self._lock:
            self._stops[op_id] = stop
        threading.Thread(target=self._guarded, args=(op_id, run, request, stop), daemon=True,
                         name=f"stream-{op_id}").start()

    def _guarded(self, op_id: str, run, request, stop: threading.Event) -> None:
        try:
            run(op_id, request, stop)
        finally:
            with self._lock:
                self._stops.pop(op_id, None)

    def _run_tap(self, op_id: str, request: agent_pb2.TapRequest, stop) -> None:
        def reply(**event) -> None:
            self.send(mesh_pb2.AgentMessage(op_id=op_id, tap=agent_pb2.TapEvent(**event)))

        def packet(p) -> None:
            reply(packet=agent_pb2.TapPacket(ts=p.ts, data=p.data, orig_len=p.orig_len))
        try:
            summary = self.handlers.tap(request, on_packet=packet, stop=stop,
                                        on_entered=lambda entered: reply(entered=entered))
        except base.OperationError as exc:
            reply(error=str(exc), refused=isinstance(exc, base.Refused))
            return
        except Exception as exc:  # a bug must not leave the colony waiting
            log.exception("tap failed")
            reply(error=f"agent error: {exc}")
            return
        reply(summary=agent_pb2.TapSummary(packets=summary.packets, bytes=summary.bytes,
                                           dropped=summary.dropped, reason=summary.reason))

    def _run_trace(self, op_id: str, request: agent_pb2.TraceRequest, stop) -> None:
        def reply(**event) -> None:
            self.send(mesh_pb2.AgentMessage(op_id=op_id, trace=agent_pb2.TraceEvent(**event)))
        try:
            summary = self.handlers.trace(
                request, on_event=lambda e: reply(json=json.dumps(e, sort_keys=True)),
                stop=stop, on_entered=lambda entered: reply(entered=entered))
        except base.OperationError as exc:
            reply(error=str(exc), refused=isinstance(exc, base.Refused))
            return
        except Exception as exc:
            log.exception("trace failed")
            reply(error=f"agent error: {exc}")
            return
        reply(summary=agent_pb2.TraceSummary(events=summary.events, lost=summary.lost,
                                             reason=summary.reason))
