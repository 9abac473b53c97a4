"""Open agent links: the colony's side of each agent's Link stream, and request/response on it."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2

log = logging.getLogger(__name__)
_CLOSED = object()


class LinkClosed(Exception):
    """The agent's link went away while an operation was waiting on it."""


class Operation:
    """One operation's view of a link: messages the agent sends back for this op_id."""

    def __init__(self, link: AgentLink, op_id: str) -> None:
        self.link, self.op_id = link, op_id
        self.inbox: queue.Queue = queue.Queue()

    def send(self, **body) -> None:
        self.link.send(mesh_pb2.ColonyMessage(op_id=self.op_id, **body))

    def receive(self, timeout: float) -> mesh_pb2.AgentMessage:
        try:
            msg = self.inbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(
                f"agent {self.link.agent_id} did not answer in {timeout:.0f}s") from None
        if msg is _CLOSED:
            raise LinkClosed(f"agent {self.link.agent_id} disconnected")
        return msg

    def close(self) -> None:
        self.link.forget(self.op_id)


class Cancelled(Exception):
    """The operator went away (or cancelled) while the operation ran; the agent was told."""


class AgentLink:
    def __init__(self, agent_id: str, *, expires_at: float = float("inf")) -> None:
        self.agent_id = agent_id
        # When the certificate the link was opened with ends; a renewal moves it on.
        self.expires_at = expires_at
        self._outbox: queue.Queue = queue.Queue()
        self._ops: dict[str, Operation] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.closed = threading.Event()

    def send(self, msg: mesh_pb2.ColonyMessage) -> None:
        if self.closed.is_set():
            raise LinkClosed(f"agent {self.agent_id} disconnected")
        self._outbox.put(msg)

    def outgoing(self) -> Iterator[mesh_pb2.ColonyMessage]:
        """What the Link RPC yields to the agent, until the link closes."""
        while True:
            msg = self._outbox.get()
            if msg is _CLOSED:
                return
            yield msg

    def open(self) -> Operation:
        with self._lock:
            op = Operation(self, f"{self.agent_id}/{next(self._ids)}")
            self._ops[op.op_id] = op
        return op

    def forget(self, op_id: str) -> None:
        with self._lock:
            self._ops.pop(op_id, None)

    def deliver(self, msg: mesh_pb2.AgentMessage) -> None:
        with self._lock:
            op = self._ops.get(msg.op_id)
        if op is not None:
            op.inbox.put(msg)

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self._outbox.put(_CLOSED)
        with self._lock:
            ops, self._ops = list(self._ops.values()), {}
        for op in ops:
            op.inbox.put(_CLOSED)

    def exec(self, request: agent_pb2.ExecRequest, *, timeout: float,
             cancelled: Callable[[], bool] | None = None) -> agent_pb2.ExecResult:
        """Run one exec on the agent and wait for its result. When `cancelled()` turns true
        first, tell the agent to kill the command and raise Cancelled."""
        op = self.open()
        try:
            op.send(exec=request)
            reply = self._wait(op, timeout, cancelled)
            if reply.WhichOneof("body") == "error":
                return agent_pb2.ExecResult(exit_code=-1, error=reply.error)
            return reply.exec_result
        finally:
            op.close()

    @staticmethod
    def _wait(op: Operation, timeout: float,
              cancelled: Callable[[], bool] | None) -> mesh_pb2.AgentMessage:
        if cancelled is None:
            return op.receive(timeout)
        deadline = time.monotonic() + timeout
        while True:
            if cancelled():
                op.send(cancel=True)
                raise Cancelled(f"cancelled on agent {op.link.agent_id}")
            try:
                return op.receive(min(0.5, max(deadline - time.monotonic(), 0.001)))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"agent {op.link.agent_id} did not answer in "
                                       f"{timeout:.0f}s") from None

    def runtime(self, *, timeout: float = 10.0) -> agent_pb2.RuntimeContext:
        op = self.open()
        try:
            op.send(runtime=agent_pb2.GetRuntimeContextRequest())
            return op.receive(timeout).runtime
        finally:
            op.close()


def open_for(links: Links, agent_id: str, *,
             forward: Callable[[str], Operation | None] | None = None) -> Operation | None:
    """An operation on `agent_id`'s link: on this colony's link, else through `forward`
    (replicas: relayed to the replica holding it, replica_stream.RemoteOperation, which
    behaves as an Operation); None when no one holds the link."""
    link = links.get(agent_id)
    if link is not None:
        return link.open()
    return forward(agent_id) if forward is not None else None


class AlreadyLinked(Exception):
    """The agent id already has an open link; a second one is refused, never a takeover."""


class Links:
    """Agent id -> its open link. A second link for a connected id is refused: an impostor
    must not take over a link (and the commands and stdin sent down it)."""

    def __init__(self) -> None:
        self._links: dict[str, AgentLink] = {}
        self._lock = threading.Lock()
        # (agent_id, linked) after a link opens or closes: colony replicas record who holds it
        self.observers: list[Callable[[str, bool], None]] = []

    def _tell(self, agent_id: str, linked: bool) -> None:
        for observer in self.observers:
            try:
                observer(agent_id, linked)
            except Exception as exc:  # noqa: BLE001 - the link itself is fine
                log.error("link of %s: observer failed: %s", agent_id, exc)

    def attach(self, agent_id: str, *, expires_at: float = float("inf")) -> AgentLink:
        link = AgentLink(agent_id, expires_at=expires_at)
        with self._lock:
            old = self._links.get(agent_id)
            if old is not None and not old.closed.is_set():
                raise AlreadyLinked(f"agent {agent_id} is already connected")
            self._links[agent_id] = link
        self._tell(agent_id, True)
        return link

    def detach(self, link: AgentLink) -> None:
        with self._lock:
            mine = self._links.get(link.agent_id) is link
            if mine:
                del self._links[link.agent_id]
        link.close()
        if mine:
            self._tell(link.agent_id, False)

    def get(self, agent_id: str) -> AgentLink | None:
        with self._lock:
            return self._links.get(agent_id)

    def close_expired(self, now: float) -> list[str]:
        """Close links whose certificate ran out without a renewal; their agent ids."""
        with self._lock:
            expired = [link for link in self._links.values() if link.expires_at <= now]
        for link in expired:
            link.close()
        return [link.agent_id for link in expired]

    def connected(self) -> set[str]:
        with self._lock:
            return set(self._links)

    def close_all(self) -> None:
        with self._lock:
            links, self._links = list(self._links.values()), {}
        for link in links:
            link.close()
