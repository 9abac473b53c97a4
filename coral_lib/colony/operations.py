"""Fan-out of one exec to the targets the gate admitted: audit, run on each link, collect."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from coral_lib import convert, logs
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.colony.v1 import colony_pb2
from coral_lib.colony import audit as audit_mod
from coral_lib.colony import auth, links, policy, registry
from coral_lib.colony import targets as targets_mod

log = logging.getLogger(__name__)
LINK_MARGIN = 10.0  # seconds beyond the command's timeout before the colony gives up on an agent


@dataclasses.dataclass(frozen=True)
class _Start:
    key: str  # the per-target op id of its audit records
    provenance: str
    record: tuple[str, dict[str, str]]  # audit_mod.started_record


@dataclasses.dataclass
class FanOut:
    registry: registry.Registry
    audit: audit_mod.AuditLog
    links: links.Links
    # Replicas (coral_lib.colony.replica_link.Forwarder): run on the replica holding the
    # link when this one does not; `replica` names this one in `started` records.
    forward: Callable[..., tuple[agent_pb2.ExecResult, bool] | None] | None = None
    replica: str = ""

    def run(
        self, *, identity: auth.Identity, request: colony_pb2.OperateRequest,
        targets: list[colony_pb2.Target], admission: policy.Admission,
        is_active: Callable[[], bool] = lambda: True,
    ) -> Iterator[colony_pb2.OperateEvent]:
        """Yield one result event per target as each finishes, then a summary. Targets the
        gate refused are reported first, as refused, and never run. Once the operator's
        call is no longer active (cancelled, client gone), agents kill what still runs."""
        op_id = uuid.uuid4().hex[:16]
        yield colony_pb2.OperateEvent(targets=colony_pb2.ResolveResponse(targets=targets))
        results = [_refused(t, audit_id, reason) for t, audit_id, reason in admission.refused]
        for result in results:
            yield colony_pb2.OperateEvent(result=result)
        allowed = dispatch_order(admission.allowed)
        workers = max(1, min(request.max_concurrency or 64, len(allowed) or 1))
        stop_pct = request.stop_on_failure_percentage
        cancel = threading.Event()

        def cancelled() -> bool:
            return cancel.is_set() or not is_active()
        # each agent's record read once per operation, not once per target (a fleet exec
        # has many targets per agent)
        agents = {aid: self.registry.get_agent(aid) for aid in {t.agent_id for t, _ in allowed}}
        def start(target: colony_pb2.Target, rule: str) -> _Start:
            return self._start(op_id, identity, request, target, rule, admission,
                               agents[target.agent_id])
        wave = [start(t, rule) for t, rule in allowed[:workers]]  # sent at once
        first = self._write_started(wave, verb=admission.verb)
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="fanout") as pool:
            futures = {pool.submit(self._one, identity, t, request, admission, cancelled,
                                   agents[t.agent_id],
                                   wave[i] if i < len(wave) else functools.partial(start, t, rule),
                                   first.get(i, 0)): t
                       for i, (t, rule) in enumerate(allowed)}
            # the first wave's `started` records are written: those targets run (a future
            # cancelled before its thread took it would leave its record open)
            keep = set(list(futures)[:len(first)])
            try:
                yield from self._collect(futures, results, targets, stop_pct, keep)
            except GeneratorExit:  # the Operate call was cancelled or its client died
                cancel.set()
                for pending in futures:
                    if pending not in keep:
                        pending.cancel()
                raise
        yield colony_pb2.OperateEvent(summary=_summary(op_id, targets, results))

    @staticmethod
    def _collect(futures, results, targets, stop_pct, keep) -> Iterator[colony_pb2.OperateEvent]:
        for future in concurrent.futures.as_completed(futures):
            result = _skipped(futures[future]) if future.cancelled() else future.result()
            results.append(result)
            yield colony_pb2.OperateEvent(result=result)
            failed = sum(r.status != "ok" for r in results)
            if stop_pct and failed * 100.0 / len(targets) > stop_pct:
                for pending in futures:
                    if pending not in keep:
                        pending.cancel()

    def _start(self, op_id: str, identity: auth.Identity, request: colony_pb2.OperateRequest,
               target: colony_pb2.Target, rule: str, admission: policy.Admission,
               agent: registry.AgentRow | None) -> _Start:
        """The `started` record of one target (written before it is sent)."""
        provenance = targets_mod.provenance(self.registry, target)
        runtime = agent_pb2.RuntimeMode.Name(agent.runtime.mode) if agent else "unknown"
        key = f"{op_id}/{target.agent_id}/{target.pod}/{target.container}"
        record = audit_mod.started_record(
            op_id=key, requester=identity.name,
            verb=admission.verb,  # from the RPC (colony/verbs.py), never from the request
            agent_id=target.agent_id, runtime=runtime, service=target.service,
            namespace=target.namespace, pod=target.pod, provenance=provenance,
            command=shlex.join(request.exec.argv), approval_id=admission.approval_id,
            decision_rule=rule, replica=self.replica,
            node=target.node or (agent.node_name if agent else ""))
        return _Start(key=key, provenance=provenance, record=record)

    def _write_started(self, wave: list[_Start], *, verb: str) -> dict[int, int]:
        """Write the `started` records of the targets sent at once in ONE transaction (one
        fsync instead of one per target before the first command can start): index in
        `wave` -> audit id. {} when it fails: each target then tries its own record and is
        refused, unrun, when that fails too."""
        if len(wave) < 2:
            return {}
        try:
            return dict(enumerate(self.audit.append_all([s.record for s in wave])))
        except audit_mod.AuditError as exc:
            log.error("%s: started records of %d targets not written: %s", verb, len(wave),
                      exc)
            return {}

    def _one(self, identity: auth.Identity, target: colony_pb2.Target,
             request: colony_pb2.OperateRequest, admission: policy.Admission,
             cancelled: Callable[[], bool], agent: registry.AgentRow | None,
             start: _Start | Callable[[], _Start], audit_id: int) -> colony_pb2.TargetResult:
        """Run on one target; `audit_id`: its `started` record when already written (0: write
        it here; `start` then makes it, in this worker)."""
        if not isinstance(start, _Start):
            start = start()
        verb, key, provenance = admission.verb, start.key, start.provenance
        if not audit_id:
            try:
                audit_id = self.audit.append(*start.record)
            except audit_mod.AuditError as exc:
                log.error("%s on %s not run: %s", verb, target.agent_id, exc)
                return _refused(target, 0, f"not run because it could not be audited: {exc}")
        if cancelled():  # recorded as started: closed as interrupted, never sent
            result, cut_off = agent_pb2.ExecResult(
                exit_code=-1, error="cancelled before it was sent to the agent"), True
        else:
            result, cut_off = self._execute(request.exec, target, cancelled)
        status = "interrupted" if cut_off else convert.exec_outcome(result)
        finished_id = 0
        entered = targets_mod.entered_fields(
            op_id=key, target=target, entered=result.entered, provenance=provenance,
        ) if result.HasField("entered") else None
        try:  # entered + finished: one transaction, one fsync
            finished_id = self.audit.finished(
                op_id=key, status=status, exit_code=result.exit_code,
                duration=result.duration_seconds,
                bytes_out=len(result.stdout) + len(result.stderr), error=result.error,
                entered=entered,
            )
        except audit_mod.AuditError as exc:  # it ran; restart marks the record interrupted
            log.error("audit end record of %s lost: %s", key, exc)
        log.info("%s %s", verb, status, extra=logs.fields(
            op_id=key, identity=identity.name, agent=target.agent_id,
            target=targets_mod.name(target), outcome=status))
        return colony_pb2.TargetResult(target=target, result=result, audit_id=audit_id,
                                       status=status, finished_audit_id=finished_id or 0)

    def _execute(self, exec_request: agent_pb2.ExecRequest, target: colony_pb2.Target,
                 cancelled: Callable[[], bool]) -> tuple[agent_pb2.ExecResult, bool]:
        """The agent's result, and whether the command was cut off mid-run (its agent's
        link dropped, or the operator cancelled): the audit then says `interrupted`."""
        request = agent_pb2.ExecRequest()
        request.CopyFrom(exec_request)
        request.target.CopyFrom(targets_mod.agent_target(target))
        request.service = target.service
        timeout = (request.timeout_seconds or 30.0) + LINK_MARGIN
        link = self.links.get(target.agent_id)
        if link is None and self.forward is not None:
            forwarded = self.forward(request, target.agent_id, timeout=timeout,
                                     cancelled=cancelled)
            if forwarded is not None:
                return forwarded
        if link is None:
            return agent_pb2.ExecResult(
                exit_code=-1, error=f"agent {target.agent_id} is not connected"), False
        started = time.monotonic()
        try:
            return link.exec(request, timeout=timeout, cancelled=cancelled), False
        except (links.LinkClosed, links.Cancelled, TimeoutError) as exc:
            return agent_pb2.ExecResult(exit_code=-1, error=str(exc),
                                        duration_seconds=time.monotonic() - started), \
                not isinstance(exc, TimeoutError)


def dispatch_order(allowed: list[tuple[colony_pb2.Target, str]]
                   ) -> list[tuple[colony_pb2.Target, str]]:
    """The order targets are sent in: one per agent in turn (each agent's own in their
    order). Targets come sorted by agent, so with fewer workers than targets the first
    max_concurrency of them would all go to the first agent (say 64 pods of one node) and
    every other agent would wait, idle, until that one's were nearly done."""
    per_agent: dict[str, list[tuple[colony_pb2.Target, str]]] = {}
    for item in allowed:
        per_agent.setdefault(item[0].agent_id, []).append(item)
    lanes = list(per_agent.values())
    return [lane[i] for i in range(max(map(len, lanes), default=0))
            for lane in lanes if i < len(lane)]


def _skipped(target: colony_pb2.Target) -> colony_pb2.TargetResult:
    return colony_pb2.TargetResult(
        target=target, status="skipped",
        result=agent_pb2.ExecResult(exit_code=-1, error="skipped: failure threshold reached"),
    )


def _refused(target: colony_pb2.Target, audit_id: int, reason: str) -> colony_pb2.TargetResult:
    return colony_pb2.TargetResult(
        target=target, audit_id=audit_id, status="refused",
        result=agent_pb2.ExecResult(exit_code=-1, error=f"refused: {reason}", refused=True),
    )


def _summary(op_id: str, targets, results) -> colony_pb2.OperateSummary:
    ok = sum(r.status == "ok" for r in results)
    return colony_pb2.OperateSummary(
        targets=len(targets), succeeded=ok, failed=len(targets) - ok,
        audit_ids=[r.audit_id for r in results if r.audit_id], operation_id=op_id,
    )
