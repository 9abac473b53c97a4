"""Streamed operations (tap, trace) relayed from each target's agent to the operator.

Each admitted target gets its own thread: audit `started`, send the request down the
agent's link, forward every event the agent sends back for that op id, audit `finished`
once the agent's summary (or error) arrives, the link drops, or the operator goes away
(then the agent is told to cancel). The operator's stream interleaves all targets'
events; the first event lists the targets, refused ones come next with their reason.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.colony.v1 import colony_pb2
from coral_lib.colony import audit as audit_mod
from coral_lib.colony import auth, links, policy, registry
from coral_lib.colony import targets as targets_mod

log = logging.getLogger(__name__)
TAP_MARGIN = 30.0     # seconds past the duration before the colony gives up on an agent
TRACE_MARGIN = 150.0  # trace first compiles its BPF program (clang), which takes a while
_DONE = object()


def tap_command(tap: agent_pb2.TapRequest) -> str:
    """What the audit log and approvals show for a tap."""
    parts = ["tap", f"--duration={tap.duration_seconds:g}", f"--max-packets={tap.max_packets}",
             f"--max-bytes={tap.max_bytes}"]
    if tap.headers_only:
        parts.append("--headers-only")
    return shlex.join(parts + ([f"--filter={tap.filter}"] if tap.filter else []))


def trace_command(trace: agent_pb2.TraceRequest) -> str:
    return shlex.join(["trace", trace.kind, f"--duration={trace.duration_seconds:g}",
                       f"--max-events={trace.max_events}"])


@dataclasses.dataclass(frozen=True)
class _Kind:
    verb: str
    field: str  # the oneof field on the link: tap | trace
    event_type: type
    margin: float
    size: Callable  # bytes one event carries, for the audit's bytes_out


_TAP = _Kind("tap", "tap", colony_pb2.TapOperateEvent, TAP_MARGIN,
             lambda e: len(e.packet.data) if e.WhichOneof("event") == "packet" else 0)
_TRACE = _Kind("trace", "trace", colony_pb2.TraceOperateEvent, TRACE_MARGIN,
               lambda e: len(e.json) if e.WhichOneof("event") == "json" else 0)


@dataclasses.dataclass
class Relay:
    registry: registry.Registry
    audit: audit_mod.AuditLog
    links: links.Links
    gate: policy.Gate
    # Replicas (replica_link.Forwarder.open): the operation relayed to the replica holding
    # the link when this one does not; `replica` names this one in `started` records.
    forward: Callable[[str], links.Operation | None] | None = None
    replica: str = ""

    def tap(self, *, identity: auth.Identity, request: colony_pb2.TapOperateRequest,
            targets: list[colony_pb2.Target], admission: policy.Admission,
            is_active) -> Iterator[colony_pb2.TapOperateEvent]:
        def body(target: colony_pb2.Target) -> agent_pb2.TapRequest:
            tap = agent_pb2.TapRequest()
            tap.CopyFrom(request.tap)
            _fill(tap.target, target)
            tap.headers_only = tap.headers_only or self.gate.headers_only(target)
            return tap
        yield from self._run(_TAP, identity=identity, targets=targets, admission=admission,
                             body=body, duration=request.tap.duration_seconds,
                             command=tap_command(request.tap), is_active=is_active)

    def trace(self, *, identity: auth.Identity, request: colony_pb2.TraceOperateRequest,
              targets: list[colony_pb2.Target], admission: policy.Admission,
              is_active) -> Iterator[colony_pb2.TraceOperateEvent]:
        def body(target: colony_pb2.Target) -> agent_pb2.TraceRequest:
            trace = agent_pb2.TraceRequest()
            trace.CopyFrom(request.trace)
            _fill(trace.target, target)
            return trace
        yield from self._run(_TRACE, identity=identity, targets=targets, admission=admission,
                             body=body, duration=request.trace.duration_seconds,
                             command=trace_command(request.trace), is_active=is_active)

    def _run(self, kind: _Kind, *, identity, targets, admission, body, duration, command,
             is_active) -> Iterator:
        make = kind.event_type
        yield make(targets=colony_pb2.ResolveResponse(targets=targets))
        for target, audit_id, reason in admission.refused:
            yield make(target=target, audit_id=audit_id,
                       event=_error_event(kind, f"refused: {reason}", refused=True))
        events: queue.Queue = queue.Queue()
        stop = threading.Event()
        op_id = uuid.uuid4().hex[:16]
        threads = [threading.Thread(
            target=self._one, daemon=True, name=f"{kind.verb}-{target.agent_id}",
            kwargs={"kind": kind, "op_id": op_id, "identity": identity, "target": target,
                    "rule": rule, "approval_id": admission.approval_id, "request": body(target),
                    "verb": admission.verb,
                    "deadline": time.monotonic() + (duration or 10.0) + kind.margin,
                    "command": command, "events": events, "stop": stop})
            for target, rule in admission.allowed]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                try:
                    item = events.get(timeout=0.5)
                except queue.Empty:
                    if not is_active():
                        break
                    continue
                if item is _DONE:
                    running -= 1
                    continue
                yield item
        finally:
            stop.set()  # the operator went away (or all ended): threads cancel and audit

    def _one(self, *, kind: _Kind, op_id, identity, target, rule, approval_id, request,
             verb: str, deadline, command, events: queue.Queue, stop: threading.Event) -> None:
        key = f"{op_id}/{target.agent_id}/{target.pod}/{target.container}"
        agent = self.registry.get_agent(target.agent_id)
        provenance = targets_mod.provenance(self.registry, target)
        try:
            audit_id = self.audit.started(
                op_id=key, requester=identity.name, verb=verb, agent_id=target.agent_id,
                runtime=agent_pb2.RuntimeMode.Name(agent.runtime.mode) if agent else "unknown",
                service=target.service, namespace=target.namespace, pod=target.pod,
                provenance=provenance, command=command, approval_id=approval_id,
                decision_rule=rule, node=target.node or (agent.node_name if agent else ""),
                replica=self.replica)
        except audit_mod.AuditError as exc:
            events.put(kind.event_type(target=target, event=_error_event(
                kind, f"refused: not run because it could not be audited: {exc}",
                refused=True)))
            events.put(_DONE)
            return
        began, sent, status, error = time.monotonic(), 0, "interrupted", ""
        try:
            for event in self._exchange(kind, target=target, request=request,
                                        deadline=deadline, stop=stop):
                sent += kind.size(event)
                which = event.WhichOneof("event")
                if which == "entered":  # for the audit; the operator already has the target
                    targets_mod.record_entered(self.audit, op_id=key, target=target,
                                               entered=event.entered, provenance=provenance)
                    continue
                if which == "summary":
                    status = "ok"
                elif which == "error":
                    status, error = ("refused" if event.refused else "error"), event.error
                events.put(kind.event_type(target=target, event=event, audit_id=audit_id))
        finally:
            try:
                self.audit.finished(op_id=key, status=status, exit_code=None,
                                    duration=time.monotonic() - began, bytes_out=sent,
                                    error=error)
            except audit_mod.AuditError as exc:
                log.error("audit end record of %s lost: %s", key, exc)
            events.put(_DONE)

    def _exchange(self, kind: _Kind, *, target, request, deadline, stop) -> Iterator:
        """The agent's events for one target, ending with a summary or an error."""
        op = links.open_for(self.links, target.agent_id, forward=self.forward)
        if op is None:
            yield _error_event(kind, f"agent {target.agent_id} is not connected")
            return
        ended = False
        try:
            op.send(**{kind.field: request})
            while not stop.is_set():
                if time.monotonic() > deadline:
                    yield _error_event(kind, f"agent {target.agent_id} did not finish in time")
                    return
                try:
                    reply = op.receive(timeout=0.5)
                except TimeoutError:
                    continue
                body = reply.WhichOneof("body")
                event = (getattr(reply, kind.field) if body == kind.field
                         else _error_event(kind, reply.error or f"unexpected reply {body}"))
                ended = event.WhichOneof("event") in ("summary", "error")
                yield event
                if ended:
                    return
        except links.LinkClosed as exc:
            ended = True
            yield _error_event(kind, str(exc))
        finally:
            if not ended:
                _cancel(op)
            op.close()


def _fill(out: agent_pb2.ExecTarget, target: colony_pb2.Target) -> None:
    out.CopyFrom(targets_mod.agent_target(target))


def _error_event(kind: _Kind, text: str, *, refused: bool = False):
    event = agent_pb2.TapEvent if kind is _TAP else agent_pb2.TraceEvent
    return event(error=text, refused=refused)


def _cancel(op: links.Operation) -> None:
    try:
        op.send(cancel=True)
    except links.LinkClosed:
        pass
