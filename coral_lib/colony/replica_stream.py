"""Streamed operations (shell, tap, trace) relayed to the colony replica holding an agent's
link, over the replica port (`/coral.colony.v1.Replica/Stream`, mutual TLS, replica
certificates only: see replica_link.py).

The relay is one link operation carried over gRPC. The calling replica has authenticated,
authorized, approved and audited the operation; it then drives a `RemoteOperation`, which
has the interface of `links.Operation` (send, receive, close), so the local shell and
tap/trace paths (colony/shell.py, colony/tap_relay.py) run unchanged on either. The holder
(`serve`) opens an operation on the agent's link and pipes it both ways:

* caller -> holder: `mesh.v1.ColonyMessage` frames — first `shell.start`, `tap` or `trace`,
  then shell input or `cancel` (`frame_problem`, pure); the op id is the holder's.
* holder -> caller: the agent's `mesh.v1.AgentMessage` replies for that operation.
* the holder sends the initial metadata `coral-linked: 1` once it holds the link, so the
  caller can tell "not connected" apart from a stream that started.
* the caller half-closes when the operation ended (after a `cancel` frame if it gave up);
  however the stream ends (half-close, the caller cancelled or its replica died), the
  holder then cancels the operation on the agent, a no-op for one that has ended.
* the agent's link dropping ends the stream UNAVAILABLE, which the caller's `receive`
  raises as `links.LinkClosed`, as the local path does.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator

import grpc

from coral_lib import validate
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import links

log = logging.getLogger(__name__)

METHOD = "/coral.colony.v1.Replica/Stream"
AGENT_KEY = "coral-agent-id"  # request metadata: the agent whose link carries the operation
ACCEPTED = "coral-linked"     # initial metadata: the holder opened the operation on the link
OPEN_TIMEOUT = 10.0           # seconds the caller waits for the holder to accept
_END = object()


def frame_problem(msg: mesh_pb2.ColonyMessage, *, first_kind: str | None) -> str:
    """'' when `msg` may go down the link; else why not. `first_kind` is the body of the
    stream's first frame (None for the first frame itself)."""
    which = msg.WhichOneof("body")
    shell_input = msg.shell.WhichOneof("input") if which == "shell" else None
    if first_kind is None:
        if which in ("tap", "trace") or shell_input == "start":
            return ""
        return (f"the first frame of a relayed stream must be shell.start, tap or trace, "
                f"not {shell_input or which or 'an empty frame'}")
    if which == "cancel" or (first_kind == "shell" and shell_input not in (None, "start")):
        return ""
    allowed = "shell input or cancel" if first_kind == "shell" else "cancel"
    return (f"a later frame of a relayed {first_kind} must be {allowed}, "
            f"not {shell_input or which or 'an empty frame'}")


# -- the calling replica ---------------------------------------------------------------------


class RemoteOperation:
    """A link operation on the replica `replica`, which holds `agent_id`'s link (see module
    docstring); built by `open_remote`."""

    def __init__(self, channel: grpc.Channel, *, agent_id: str, replica: str) -> None:
        self.agent_id, self.replica = agent_id, replica
        self._out: queue.Queue = queue.Queue()
        self._in: queue.Queue = queue.Queue()
        self._closed = threading.Event()
        self._answered = threading.Event()
        self.accepted = False
        self._call = channel.stream_stream(
            METHOD, request_serializer=mesh_pb2.ColonyMessage.SerializeToString,
            response_deserializer=mesh_pb2.AgentMessage.FromString,
        )(iter(self._out.get, _END), metadata=((AGENT_KEY, agent_id),))
        threading.Thread(target=self._read, daemon=True,
                         name=f"relay-{agent_id[:40]}").start()

    def _read(self) -> None:
        try:
            self.accepted = dict(self._call.initial_metadata() or ()).get(ACCEPTED) == "1"
            self._answered.set()
            for msg in self._call:
                self._in.put(msg)
            self._in.put(links.LinkClosed(
                f"replica {self.replica} ended the relay of agent {self.agent_id}"))
        except grpc.RpcError as exc:
            self._in.put(links.LinkClosed(
                f"replica {self.replica} holding agent {self.agent_id}'s link: "
                f"{exc.code().name}: {exc.details()}"))
        finally:
            self._answered.set()

    def wait_accepted(self, timeout: float) -> bool:
        return self._answered.wait(timeout) and self.accepted

    def send(self, **body) -> None:
        if self._closed.is_set():
            raise links.LinkClosed(f"the relay of agent {self.agent_id} is closed")
        self._out.put(mesh_pb2.ColonyMessage(**body))

    def receive(self, timeout: float) -> mesh_pb2.AgentMessage:
        try:
            item = self._in.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"agent {self.agent_id} (on replica {self.replica}) did not "
                               f"answer in {timeout:.0f}s") from None
        if isinstance(item, links.LinkClosed):
            self._in.put(item)  # every later receive says the same
            self._closed.set()
            raise item
        return item

    def close(self) -> None:
        """Half-close: the holder ends the relay (its cancel is a no-op on the agent for an
        operation that ended; a caller that gave up has sent `cancel` already)."""
        self._closed.set()
        self._out.put(_END)

    def abandon(self) -> None:
        self._closed.set()
        self._call.cancel()


def open_remote(channel: grpc.Channel, *, agent_id: str, replica: str,
                timeout: float = OPEN_TIMEOUT) -> RemoteOperation | None:
    """An operation on `replica`, which should hold `agent_id`'s link; None when it does not
    (it refused, went away, or did not answer in `timeout` seconds)."""
    op = RemoteOperation(channel, agent_id=agent_id, replica=replica)
    if op.wait_accepted(timeout):
        return op
    log.warning("replica %s did not take the relay of agent %s", replica, agent_id)
    op.abandon()
    return None


# -- the replica holding the link ------------------------------------------------------------


def serve(link: links.AgentLink, request_iterator, context, *,
          caller: str) -> Iterator[mesh_pb2.AgentMessage]:
    """Pipe the caller's frames to an operation on `link` and the agent's replies back,
    until the caller half-closes or goes away (then cancel it) or the link drops (abort)."""
    op = link.open()
    context.send_initial_metadata(((ACCEPTED, "1"),))
    pump = _Pump(request_iterator, op)
    threading.Thread(target=pump.run, daemon=True, name=f"relay-in-{link.agent_id}").start()
    log.info("relaying an operation on agent %s for replica %s", link.agent_id,
             validate.printable(caller))
    try:
        while not pump.done.is_set() and context.is_active():
            try:
                yield op.receive(timeout=0.5)
            except TimeoutError:
                continue
    except links.LinkClosed as exc:
        context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    finally:
        # gRPC may show a caller that died as one that half-closed, so whatever may still
        # run is cancelled either way (the agent ignores a cancel for an ended operation).
        _cancel(op)
        op.close()
    if pump.problem:
        log.warning("relay for replica %s refused: %s", validate.printable(caller),
                    pump.problem)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, pump.problem)
    if link.closed.is_set():
        context.abort(grpc.StatusCode.UNAVAILABLE, f"agent {link.agent_id} disconnected")


class _Pump:
    """Caller frames -> the link, checked one by one; `done` when the caller's side ends."""

    def __init__(self, frames, op: links.Operation) -> None:
        self.frames, self.op = frames, op
        self.done = threading.Event()
        self.problem = ""

    def run(self) -> None:
        first_kind = None
        try:
            for msg in self.frames:
                self.problem = frame_problem(msg, first_kind=first_kind)
                if self.problem:
                    return
                which = msg.WhichOneof("body")
                first_kind = first_kind or which
                self.op.send(**{which: getattr(msg, which)})
        except Exception as exc:  # noqa: BLE001 - caller gone, bad frame or link closed
            log.debug("relay input ended: %s", exc)
        finally:
            self.done.set()


def _cancel(op: links.Operation) -> None:
    try:
        op.send(cancel=True)
    except links.LinkClosed:
        pass
