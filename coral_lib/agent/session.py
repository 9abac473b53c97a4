"""The agent's conversation with its colony: register, heartbeat, and the operation link."""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from coral_lib import __version__, addresses, convert, heap, pagecache
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2, mesh_pb2_grpc
from coral_lib.agent import handlers as handlers_mod
from coral_lib.agent import observe, taps
from coral_lib.agent import shells as shells_mod

log = logging.getLogger(__name__)


LINK_MESSAGE_LIMIT = 256 << 20  # the colony's message limit (colony/server.py MESSAGE_LIMITS)


class Refused(Exception):
    """The colony refused the registration (e.g. a service outside the agent's scope)."""


LINK_RETRY_CAP = 15.0  # seconds between Link attempts at most, one colony address
# the same with several replica addresses to fail over to: gRPC's reconnect cap, one bound
FAILOVER_LINK_RETRY_CAP = addresses.FAILOVER_RECONNECT_CAP
STABLE_LINK = 10.0  # a link up this long starts the backoff afresh when it drops; one that
# a colony keeps closing at once does not, so it is not retried twice a second


def backoff(attempt: int, *, base: float = 0.5, cap: float = 15.0) -> float:
    """Exponential backoff with full jitter, so a restarted colony is not stampeded."""
    return random.uniform(0, min(cap, base * (2 ** min(attempt, 10))))


class Stopped(Exception):
    """The agent began to stop while a call to the colony was in flight; the call was
    cancelled (a colony that does not answer must not hold up systemd's or kubelet's stop)."""


STOP_POLL = 0.2  # seconds: how soon an in-flight call notices the agent stopping


class Session:
    """One agent's conversation with the colony over one channel whose call credentials
    (agent.credentials) prove who it is; `agent_id` is what its certificate names. With
    `stop`, register and heartbeat calls are cancelled when it is set (raising Stopped)."""

    def __init__(self, *, stub: mesh_pb2_grpc.MeshStub, agent_id: str, node_name: str = "",
                 labels: dict[str, str] | None = None,
                 node_labels: dict[str, str] | None = None,
                 stop: threading.Event | None = None) -> None:
        self.stub, self.agent_id = stub, agent_id
        self.node_name, self.labels, self.node_labels = node_name, labels or {}, node_labels or {}
        self.stop = stop

    def _call(self, method: Any, request: Any, timeout: float) -> Any:
        if self.stop is None:
            return method(request, timeout=timeout)
        call = method.future(request, timeout=timeout)
        finished = threading.Event()
        call.add_done_callback(lambda _call: finished.set())
        while not finished.wait(STOP_POLL):
            if self.stop.is_set():
                call.cancel()
                raise Stopped()
        return call.result()

    def register(self, *, services: list[mesh_pb2.ServiceInfo],
                 runtime: agent_pb2.RuntimeContext, timeout: float = 10.0,
                 pods: list[mesh_pb2.PodRef] | None = None) -> float:
        """Register; returns the heartbeat interval. Raises Refused or grpc.RpcError."""
        reply = self._call(self.stub.Register, mesh_pb2.RegisterRequest(
            version=__version__, labels=self.labels, services=services,
            node_name=self.node_name, node_labels=self.node_labels, runtime=runtime,
            pods=pods or [],
        ), timeout)
        if not reply.accepted:
            raise Refused(f"colony refused agent {self.agent_id}: {reply.reason}")
        return reply.heartbeat_interval_seconds or 10.0

    def heartbeat(self, *, services: list[mesh_pb2.ServiceInfo] | None,
                  timeout: float = 10.0, pods: list[mesh_pb2.PodRef] | None = None,
                  health: list[mesh_pb2.ServiceHealth] | None = None
                  ) -> mesh_pb2.HeartbeatResponse:
        """services/pods None: unchanged since the last call."""
        return self._call(self.stub.Heartbeat, mesh_pb2.HeartbeatRequest(
            services_changed=services is not None, services=services or [],
            pods_changed=pods is not None, pods=pods or [], health=health or [],
        ), timeout)

    def deregister(self, reason: str, *, timeout: float = 5.0) -> bool:
        """Leave the colony's registry (the agent stops for good); False when the colony
        could not be told (it then expires the agent after agentExpiry)."""
        try:
            self.stub.Deregister(mesh_pb2.DeregisterRequest(reason=reason), timeout=timeout)
        except grpc.RpcError as exc:
            log.warning("could not deregister from the colony: %s", exc.code())
            return False
        log.info("deregistered from the colony (%s)", reason)
        return True

    def hello(self) -> mesh_pb2.AgentMessage:
        # Informational: the colony knows who is linking from the call's verified metadata.
        return mesh_pb2.AgentMessage(hello=mesh_pb2.LinkHello())


_END = object()


class LinkWorker:
    """Keeps the Link stream open and answers the operations the colony sends down it."""

    def __init__(self, session: Session, handlers: handlers_mod.Handlers, *,
                 stop: threading.Event, max_parallel: int = 16,
                 recorder: observe.Recorder = observe.NULL,
                 retry_cap: float = LINK_RETRY_CAP) -> None:
        """retry_cap: the longest wait between Link attempts (FAILOVER_LINK_RETRY_CAP when
        other replicas can take the link)."""
        self.session, self.handlers, self.stop = session, handlers, stop
        self.retry_cap = retry_cap
        self.recorder, self._opened, self._opened_at = recorder, 0, 0.0
        self._pool = concurrent.futures.ThreadPoolExecutor(max_parallel, thread_name_prefix="op")
        self.connected = threading.Event()
        self._running: dict[str, threading.Event] = {}  # exec op id -> its cancel switch
        self._running_lock = threading.Lock()

    def run_forever(self) -> None:
        attempt = 0
        while not self.stop.is_set():
            try:
                self._run_once()
                attempt = 0
            except grpc.RpcError as exc:
                log.debug("link to colony lost: %s", exc.code())
            except Exception:  # noqa: BLE001 - a bug handling one message must not end the link for good
                log.exception("link to colony dropped after an error; linking again")
            if self.connected.is_set():
                self.recorder.link(False)
                if time.monotonic() - self._opened_at >= STABLE_LINK:
                    attempt = 0  # re-linking after a replica died takes < 0.5 s
            self.connected.clear()
            if self.stop.wait(backoff(attempt, cap=self.retry_cap)):
                break
            attempt += 1
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run_once(self) -> None:
        outbox: queue.Queue = queue.Queue()
        outbox.put(self.session.hello())

        def requests():
            while True:
                item = outbox.get()
                if item is _END:
                    return
                yield item

        shells = shells_mod.ShellOps(self.handlers, outbox.put)
        streams = taps.StreamOps(self.handlers, outbox.put)
        responses = self.session.stub.Link(requests())
        watcher = threading.Thread(target=self._cancel_on_stop, args=(responses, outbox),
                                   daemon=True)
        watcher.start()
        try:
            responses.initial_metadata()  # returns when headers came or the call failed
            if not responses.done():  # headers: the colony accepted the link
                self._opened_link()
            for msg in responses:
                self._dispatch(msg, outbox.put, shells, streams)
        finally:
            outbox.put(_END)
            shells.close_all()
            streams.close_all()

    def _opened_link(self) -> None:
        self._opened_at = time.monotonic()
        self.connected.set()
        self.recorder.link(True, reconnect=self._opened > 0)
        self._opened += 1

    def _cancel_on_stop(self, responses, outbox: queue.Queue) -> None:
        while not self.stop.wait(0.5):
            if responses.done():
                return
        responses.cancel()
        outbox.put(_END)

    def _dispatch(self, msg: mesh_pb2.ColonyMessage, send: Callable,
                  shells: shells_mod.ShellOps, streams: taps.StreamOps) -> None:
        kind = msg.WhichOneof("body")
        if kind in ("tap", "trace") or (kind == "shell" and
                                        msg.shell.WhichOneof("input") == "start"):
            self.recorder.operation(kind, 0.0, "started")
        if kind == "shell":
            shells.handle(msg.op_id, msg.shell)
        elif kind == "cancel":
            with self._running_lock:
                running = self._running.get(msg.op_id)
            if running is not None:
                running.set()
            elif not streams.cancel(msg.op_id):
                shells.cancel(msg.op_id)
        elif kind == "tap":
            streams.tap(msg.op_id, msg.tap)
        elif kind == "trace":
            streams.trace(msg.op_id, msg.trace)
        elif kind == "exec":
            self._pool.submit(self._exec, msg, send)
        elif kind == "runtime":
            send(mesh_pb2.AgentMessage(op_id=msg.op_id, runtime=self.handlers.runtime))
        else:
            send(mesh_pb2.AgentMessage(op_id=msg.op_id, error=f"unsupported operation {kind}"))

    def _exec(self, msg: mesh_pb2.ColonyMessage, send: Callable) -> None:
        cancel, started = threading.Event(), time.monotonic()
        with self._running_lock:
            self._running[msg.op_id] = cancel
        try:
            result = self.handlers.exec(msg.exec, cancel=cancel)
        except Exception as exc:  # a handler bug must not kill the link
            log.exception("exec failed")
            result = agent_pb2.ExecResult(exit_code=-1, error=f"agent error: {exc}")
        finally:
            with self._running_lock:
                self._running.pop(msg.op_id, None)
        self.recorder.operation("exec", time.monotonic() - started,
                                convert.exec_outcome(result))
        send(mesh_pb2.AgentMessage(op_id=msg.op_id, exec_result=result))
        pagecache.release_surplus()  # the read-ahead around code the exec faulted in (issue 15)
        if not self._running:  # the last exec of a burst: free what it used (issue 15)
            heap.trim()
