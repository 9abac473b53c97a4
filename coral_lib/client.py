"""Operator client for the colony: what the CLI and the Ansible modules call."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator

import grpc

from coral_lib import addresses, convert, errors
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.colony.v1 import colony_pb2, colony_pb2_grpc

# The library's one exception root and its kinds, re-exported: callers may keep writing
# client.CoralError, client.NoTargets, ...
CoralError = errors.CoralError
ConfigError = errors.ConfigError
Unreachable = errors.Unreachable
Unauthenticated = errors.Unauthenticated
PermissionDenied = errors.PermissionDenied
NoTargets = errors.NoTargets
InvalidRequest = errors.InvalidRequest
RateLimited = errors.RateLimited
ApprovalPending = errors.ApprovalPending

SERVICES_PAGE = 1000  # records per ListServices answer list_services asks for


@dataclasses.dataclass(frozen=True)
class Targeting:
    service: str | None = None
    agent: str | None = None
    selector: dict[str, str] | None = None
    all: bool = False
    pod: str | None = None
    namespace: str | None = None
    container: str | None = None
    node: str | None = None

    def to_proto(self) -> colony_pb2.Targeting:
        return colony_pb2.Targeting(
            service=self.service or "", agent=self.agent or "", selector=self.selector or {},
            all=self.all, pod=self.pod or "", namespace=self.namespace or "",
            container=self.container or "", node=self.node or "",
        )


@dataclasses.dataclass
class ExecOutcome:
    results: list[dict]
    audit_ids: list[int]
    operation_id: str = ""
    # what the colony resolved for this call (its stream's first event), as target dicts
    targets: list[dict] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.results if r["status"] != "ok"]


# -- typed events of tap() and trace() ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TargetsResolved:
    """First event of a tap or trace: every target that will stream (target dicts)."""

    targets: list[dict]

    @property
    def keys(self) -> list[str]:
        return [tap_key(t) for t in self.targets]


@dataclasses.dataclass(frozen=True)
class Packet:
    """One captured packet from target `target` (a tap_key)."""

    target: str
    ts: float
    data: bytes
    orig_len: int


@dataclasses.dataclass(frozen=True)
class CaptureEnded:
    """A target's capture finished; its counts and why it ended."""

    target: str
    packets: int
    bytes: int
    dropped: int
    reason: str
    audit_id: int = 0


@dataclasses.dataclass(frozen=True)
class TraceRecord:
    """One traced event (exec or connect) from target `target`."""

    target: str
    record: dict


@dataclasses.dataclass(frozen=True)
class TraceEnded:
    """A target's trace finished; its counts and why it ended."""

    target: str
    events: int
    lost: int
    reason: str
    audit_id: int = 0


@dataclasses.dataclass(frozen=True)
class TargetFailed:
    """A target's tap or trace failed (or was refused); `error` says why."""

    target: str
    error: str
    audit_id: int = 0
    refused: bool = False  # refused (scope, policy, audit) rather than failed


TapEvent = TargetsResolved | Packet | CaptureEnded | TargetFailed
TraceEvent = TargetsResolved | TraceRecord | TraceEnded | TargetFailed


def _typed(key: str, event, audit_id: int):
    """The typed event for one agent TapEvent/TraceEvent; None for ones operators never
    see (`entered` is for the colony's audit)."""
    which = event.WhichOneof("event")
    if which == "packet":
        p = event.packet
        return Packet(target=key, ts=p.ts, data=p.data, orig_len=p.orig_len)
    if which == "summary" and isinstance(event, agent_pb2.TapEvent):
        s = event.summary
        return CaptureEnded(target=key, packets=s.packets, bytes=s.bytes, dropped=s.dropped,
                            reason=s.reason, audit_id=audit_id)
    if which == "summary":
        s = event.summary
        return TraceEnded(target=key, events=s.events, lost=s.lost, reason=s.reason,
                          audit_id=audit_id)
    if which == "json":
        try:
            record = json.loads(event.json)
        except ValueError as exc:
            return TargetFailed(target=key, error=f"malformed trace event: {exc}",
                                audit_id=audit_id)
        return TraceRecord(target=key, record=record if isinstance(record, dict)
                           else {"value": record})
    if which == "error":
        return TargetFailed(target=key, error=event.error, audit_id=audit_id,
                            refused=event.refused)
    return None


def _errors(address: str):
    """Map gRPC failures to CoralError kinds by status code (and the retry-after trailer);
    the message adds the address where it helps and never decides the kind."""

    def translate(exc: grpc.RpcError) -> CoralError:
        code, details = exc.code(), exc.details() or ""
        kind = errors.BY_STATUS.get(code.name, CoralError)
        if kind is Unreachable:
            return Unreachable(f"colony unreachable at {address}: {details}", code=code.name)
        if kind is Unauthenticated:
            return Unauthenticated(f"colony at {address} refused the credentials: {details}")
        if kind is RateLimited:
            trailers = dict(exc.trailing_metadata() or ())
            try:
                retry = float(trailers.get("retry-after", 0))
            except ValueError:
                retry = 0.0
            return RateLimited(details, retry_after=retry)
        if kind is not CoralError:
            return kind(details)
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            return CoralError(details, code=code.name)
        return CoralError(f"colony at {address}: {code.name}: {details}", code=code.name)

    return translate


class Client:
    def __init__(self, channel: grpc.Channel, *, address: str, token: str,
                 timeout: float = 15.0) -> None:
        self._channel, self.address, self.timeout = channel, address, timeout
        self._stub = colony_pb2_grpc.ColonyStub(channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._translate = _errors(address)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, request, *, timeout: float | None = None):
        try:
            return getattr(self._stub, method)(
                request, metadata=self._metadata, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None

    def whoami(self) -> str:
        return self._call("WhoAmI", colony_pb2.WhoAmIRequest()).identity

    def list_agents(self, *, node: str | None = None) -> list[dict]:
        reply = self._call("ListAgents", colony_pb2.ListAgentsRequest(node=node or ""))
        return [_agent_dict(a) for a in reply.agents]

    def list_services(self, *, name: str | None = None, labels: dict | None = None,
                      provenance: str | None = None, agent: str | None = None,
                      node: str | None = None, namespace: str | None = None,
                      limit: int | None = None, page_size: int = SERVICES_PAGE) -> list[dict]:
        """Every matching service (at most `limit`), asked for in pages of `page_size`,
        in the colony's order (agent id, then service)."""
        try:
            prov = int(convert.parse_provenance(provenance)) if provenance else 0
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        if limit is not None and limit < 1:
            raise InvalidRequest(f"limit {limit}: expected a positive number or None (all)")
        request = colony_pb2.ListServicesRequest(
            name=name or "", labels=labels or {}, provenance=prov, agent=agent or "",
            node=node or "", namespace=namespace or "")
        rows: list[dict] = []
        while limit is None or len(rows) < limit:
            request.page_size = min(page_size, limit - len(rows)) if limit else page_size
            reply = self._call("ListServices", request)
            rows += [_service_dict(r) for r in reply.services]
            if not reply.next_page_token:  # also what a colony from before paging answers
                break
            request.page_token = reply.next_page_token
        return rows[:limit]

    def resolve(self, targeting: Targeting) -> list[dict]:
        reply = self._call("ResolveTargets", targeting.to_proto())
        return [target_dict(t) for t in reply.targets]

    def exec(self, targeting: Targeting, *, argv: list[str], shell: bool = False,
             timeout: float = 30.0, max_output: int = 0, max_concurrency: int = 0,
             stop_on_failure_percentage: float = 0.0,
             on_result: Callable[[dict], None] | None = None, approval_id: str = "",
             wait_for_approval: bool = True, approval_timeout: float = 3600.0,
             on_pending: Callable[[ApprovalPending], None] | None = None,
             stdin: bytes = b"",
             on_targets: Callable[[list[dict]], None] | None = None) -> ExecOutcome:
        """Run argv on every target. on_targets gets the targets the colony resolved for
        this very call (before any result), on_result each result as it finishes. When the
        colony holds it for approval: on_pending is called and the call waits (up to
        approval_timeout), or with wait_for_approval=False raises ApprovalPending; redeem
        an approved id later with approval_id."""
        request = colony_pb2.OperateRequest(
            targeting=targeting.to_proto(), max_concurrency=max_concurrency,
            stop_on_failure_percentage=stop_on_failure_percentage,
            exec=agent_pb2.ExecRequest(argv=argv, shell=shell, timeout_seconds=timeout,
                                       stdin=stdin,
                                       max_output_bytes=max_output),
            approval_id=approval_id, no_wait=not wait_for_approval,
        )
        outcome, pending = self._operate(request, timeout=timeout, wait=wait_for_approval,
                                         on_pending=on_pending, on_result=on_result,
                                         on_targets=on_targets)
        if pending:  # the colony holds no thread for it: wait here, then redeem the id
            self.wait_approval(pending, verb="exec", timeout=approval_timeout)
            request.approval_id, request.no_wait = pending, True
            outcome, _ = self._operate(request, timeout=timeout, wait=False,
                                       on_pending=on_pending, on_result=on_result,
                                       on_targets=on_targets)
        outcome.results.sort(key=lambda r: (r["agent"], r["namespace"], r["pod"], r["container"]))
        return outcome

    def _operate(self, request, *, timeout: float, wait: bool, on_pending,
                 on_result, on_targets=None) -> tuple[ExecOutcome, str]:
        """One Operate call: its outcome, and the approval id when it is pending."""
        outcome, pending = ExecOutcome(results=[], audit_ids=[]), ""
        for event in self._stream("Operate", request, timeout=timeout + 60):
            kind = event.WhichOneof("event")
            if kind == "pending":
                _pending(event.pending, wait=wait, on_pending=on_pending)
                pending = event.pending.approval_id
            elif kind == "targets":
                outcome.targets = [target_dict(t) for t in event.targets.targets]
                if on_targets:
                    on_targets(outcome.targets)
            elif kind == "result":
                row = _result_dict(event.result)
                outcome.results.append(row)
                if on_result:
                    on_result(row)
            elif kind == "summary":
                outcome.audit_ids = list(event.summary.audit_ids)
                outcome.operation_id = event.summary.operation_id
        return outcome, pending

    def wait_approval(self, approval_id: str, *, verb: str = "operation",
                      timeout: float = 3600.0, poll: float = 0.5) -> dict:
        """Poll the colony until another identity decides `approval_id`; return it when
        approved, raise PermissionDenied when denied or expired, ApprovalPending when
        `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.approval(approval_id)
            if record["state"] == "approved":
                return record
            if record["state"] != "pending":
                raise PermissionDenied(f"approval {approval_id} is {record['state']}; "
                                       f"{verb} not run")
            if time.monotonic() >= deadline:
                raise ApprovalPending(approval_id, expires_at=record["expires_at"],
                                      reason=f"still pending after {timeout:.0f}s")
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))

    def _stream(self, method: str, request, *, timeout: float) -> Iterator:
        try:
            yield from getattr(self._stub, method)(request, metadata=self._metadata,
                                                   timeout=timeout)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None

    def shell(self, targeting: Targeting, *, inputs: Iterator[agent_pb2.ShellInput],
              argv: list[str] | None = None, rows: int = 24, cols: int = 80,
              term: str = "xterm") -> Iterator[agent_pb2.ShellOutput]:
        """An interactive shell on one target: send `inputs`, iterate over its output."""
        start = agent_pb2.ShellStart(argv=argv or [], rows=rows, cols=cols, term=term)

        def frames():
            yield colony_pb2.ShellFrame(targeting=targeting.to_proto(),
                                        input=agent_pb2.ShellInput(start=start))
            for item in inputs:
                yield colony_pb2.ShellFrame(input=item)

        try:
            yield from self._stub.Shell(frames(), metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None

    def audit(self, *, kind: str | None = None, requester: str | None = None,
              agent: str | None = None, since: float | None = None,
              limit: int = 1000, op_id: str | None = None, tail: bool = False) -> list[dict]:
        reply = self._call("ListAudit", colony_pb2.ListAuditRequest(
            kind=kind or "", requester=requester or "", agent_id=agent or "",
            since=since or 0.0, limit=limit, op_id=op_id or "", tail=tail))
        return [_audit_dict(r) for r in reply.records]

    def verify_audit(self) -> dict:
        return convert.to_dict(self._call("VerifyAudit", colony_pb2.VerifyAuditRequest()))

    def audit_records(self, *, kind: str | None = None, requester: str | None = None,
                      agent: str | None = None, op_id: str | None = None,
                      since: float | None = None, page: int = 1000) -> Iterator[dict]:
        """Every matching record, oldest first, fetched a page at a time (for export)."""
        after = 0
        while True:
            reply = self._call("ListAudit", colony_pb2.ListAuditRequest(
                kind=kind or "", requester=requester or "", agent_id=agent or "",
                op_id=op_id or "", since=since or 0.0, limit=page, after_id=after))
            for r in reply.records:
                yield _audit_dict(r)
            if len(reply.records) < page:
                return
            after = reply.records[-1].id

    # -- agent administration (verb admin) ------------------------------------------------

    def revoke_agent(self, agent_id: str) -> dict:
        """Refuse the agent's certificates from its next call on and close its link."""
        return convert.to_dict(self._call("RevokeAgent", colony_pb2.RevokeAgentRequest(
            agent_id=agent_id)))

    def prune_agents(self, *, older_than: float = 0.0, dry_run: bool = False) -> list[str]:
        """Remove agents without a link last seen more than `older_than` seconds ago (0:
        the colony's agentExpiry), with their services; the ids removed (or, dry run, that
        would be)."""
        return list(self._call("PruneAgents", colony_pb2.PruneAgentsRequest(
            older_than_seconds=older_than, dry_run=dry_run)).agent_ids)

    def create_join_token(self, agent_id: str, *, ttl: float = 3600.0) -> dict:
        """A one-time join token for a host agent: {token, agent_id, expires_at}."""
        return convert.to_dict(self._call("CreateJoinToken", colony_pb2.CreateJoinTokenRequest(
            agent_id=agent_id, ttl_seconds=ttl)))

    # -- approvals --------------------------------------------------------------------------

    def approve(self, approval_id: str) -> dict:
        return _approval_dict(self._call("Decide", colony_pb2.ApprovalDecision(
            approval_id=approval_id, approve=True)))

    def deny(self, approval_id: str) -> dict:
        return _approval_dict(self._call("Decide", colony_pb2.ApprovalDecision(
            approval_id=approval_id, approve=False)))

    def approval(self, approval_id: str) -> dict:
        return _approval_dict(self._call("GetApproval", colony_pb2.ApprovalRequest(
            approval_id=approval_id)))

    def approvals(self) -> list[dict]:
        reply = self._call("ListApprovals", colony_pb2.ListApprovalsRequest())
        return [_approval_dict(a) for a in reply.approvals]

    # -- streamed operations ----------------------------------------------------------------

    def tap(self, targeting: Targeting, *, filter_expr: str = "", duration: float = 10.0,
            max_packets: int = 1000, max_bytes: int = 10 << 20, headers_only: bool = False,
            approval_id: str = "", wait_for_approval: bool = True,
            on_pending: Callable[[ApprovalPending], None] | None = None,
            approval_timeout: float = 3600.0) -> Iterator[TapEvent]:
        """Capture on every target. Yields TargetsResolved first, then Packet, CaptureEnded
        or TargetFailed events, each naming its target by tap_key()."""
        request = colony_pb2.TapOperateRequest(
            targeting=targeting.to_proto(), approval_id=approval_id,
            no_wait=not wait_for_approval, tap=agent_pb2.TapRequest(
                filter=filter_expr, duration_seconds=duration, max_packets=max_packets,
                max_bytes=max_bytes, headers_only=headers_only))
        yield from self._streamed("Tap", request, timeout=duration + 90,
                                  wait=wait_for_approval, on_pending=on_pending,
                                  approval_timeout=approval_timeout)

    def trace(self, targeting: Targeting, *, kind: str, duration: float = 10.0,
              max_events: int = 10000, approval_id: str = "", wait_for_approval: bool = True,
              on_pending: Callable[[ApprovalPending], None] | None = None,
              approval_timeout: float = 3600.0) -> Iterator[TraceEvent]:
        """Trace exec or connect events on every target. Yields TargetsResolved first,
        then TraceRecord, TraceEnded or TargetFailed events."""
        request = colony_pb2.TraceOperateRequest(
            targeting=targeting.to_proto(), approval_id=approval_id,
            no_wait=not wait_for_approval, trace=agent_pb2.TraceRequest(
                kind=kind, duration_seconds=duration, max_events=max_events))
        yield from self._streamed("Trace", request, timeout=duration + 240,
                                  wait=wait_for_approval, on_pending=on_pending,
                                  approval_timeout=approval_timeout)

    def _streamed(self, method: str, request, *, timeout: float, wait: bool,
                  on_pending, approval_timeout: float) -> Iterator:
        pending = ""
        for event in self._stream(method, request, timeout=timeout):
            if event.HasField("pending"):
                _pending(event.pending, wait=wait, on_pending=on_pending)
                pending = event.pending.approval_id
            elif event.HasField("targets"):
                yield TargetsResolved([target_dict(t) for t in event.targets.targets])
            else:
                typed = _typed(tap_key(target_dict(event.target)), event.event,
                               event.audit_id)
                if typed is not None:
                    yield typed
        if pending:  # the colony holds no thread for it: wait here, then redeem the id
            self.wait_approval(pending, verb=method.lower(), timeout=approval_timeout)
            request.approval_id, request.no_wait = pending, True
            yield from self._streamed(method, request, timeout=timeout, wait=False,
                                      on_pending=on_pending, approval_timeout=0.0)


def tap_key(target: dict) -> str:
    """One name per target: the agent, then the pod (and container) when there is one."""
    parts = [target.get("agent", ""), target.get("pod", ""), target.get("container", "")]
    return "-".join(p for p in parts if p)


def _pending(pending: colony_pb2.PendingApproval, *, wait: bool, on_pending) -> None:
    info = ApprovalPending(pending.approval_id, expires_at=pending.expires_at,
                           reason=pending.reason)
    if on_pending:
        on_pending(info)
    if not wait:
        raise info


def _audit_dict(r: colony_pb2.AuditRecord) -> dict:
    return {"id": r.id, "ts": r.ts, "kind": r.kind, "prev_hash": r.prev_hash,
            "hash": r.hash, **json.loads(r.fields_json)}


def _approval_dict(record: colony_pb2.ApprovalRecord) -> dict:
    return {"approval_id": record.approval_id, "requester": record.requester,
            "verb": record.verb, "target": record.target, "command": record.command,
            "state": record.state, "decided_by": record.decided_by,
            "expires_at": record.expires_at, "created_at": record.created_at}


def connect(address: str, *, ca_file: str, token: str = "", timeout: float = 15.0,
            client_cert: tuple[bytes, bytes] | None = None, tls_server_name: str = "",
            connect_timeout: float = 10.0) -> Client:
    """A client for the colony at address, trusting ca_file; its certificate must name
    tls_server_name when given (else the address's host). Raises Unreachable when no TLS
    connection is up within connect_timeout seconds."""
    try:
        with open(ca_file, "rb") as handle:
            ca = handle.read()
    except OSError as exc:
        raise CoralError(f"cannot read colony CA file {ca_file}: {exc.strerror}") from None
    key, cert = (client_cert[1], client_cert[0]) if client_cert else (None, None)
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                         certificate_chain=cert)
    options = [("grpc.max_receive_message_length", 256 << 20),  # large registry listings
               ("grpc.max_send_message_length", 256 << 20)]
    if tls_server_name:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    try:  # several replica addresses: one channel that fails over (coral_lib.addresses)
        target, failover = addresses.grpc_target(address)
    except addresses.AddressError as exc:
        raise CoralError(str(exc)) from None
    chan = grpc.secure_channel(target, creds, options=[*failover, *options])
    wait = min(timeout, connect_timeout)
    if not wait_connected(chan, timeout=wait):
        chan.close()
        name = f", named {tls_server_name} in its certificate" if tls_server_name else ""
        raise Unreachable(f"colony unreachable at {address}: no TLS connection within "
                          f"{wait:g}s (is it running{name}, and is {ca_file} its CA?)"
                          ) from None
    return Client(chan, address=address, token=token, timeout=timeout)


# The standard gRPC health check: the colony does not serve it, and a method a server does
# not serve is answered UNIMPLEMENTED before any handler or interceptor work (no
# authentication, audit or metrics). An empty request is a valid HealthCheckRequest.
CONNECTION_PROBE = "/grpc.health.v1.Health/Check"
_NOT_CONNECTED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def wait_connected(chan: grpc.Channel, *, timeout: float) -> bool:
    """True once the server at the other end of `chan` answers a call (any answer proves
    the TLS connection is up), False when none does within `timeout` seconds.

    Not grpc.channel_ready_future: it watches the channel's state in 0.2 s polls, and
    closing the channel then waits out the poll in flight, ~200 ms added to every
    command (grpc/grpc#3064). This is one call on the connection the next call reuses."""
    probe = chan.unary_unary(CONNECTION_PROBE)  # bytes in, bytes out
    try:
        probe(b"", timeout=timeout, wait_for_ready=True)
    except grpc.RpcError as exc:
        return exc.code() not in _NOT_CONNECTED
    return True


def _agent_dict(agent: colony_pb2.AgentRecord) -> dict:
    row = convert.to_dict(agent)
    row["runtime_mode"] = agent_pb2.RuntimeMode.Name(agent.runtime.mode).removeprefix(
        "RUNTIME_MODE_").lower()
    return row


def _service_dict(record: colony_pb2.ServiceRecord) -> dict:
    row = convert.service_dict(record.service)
    row["agent"] = record.agent_id
    row["health"] = health_dict(record.health if record.HasField("health") else None)
    return row


def health_dict(health) -> dict:
    """{state, last_check, last_error}; state "unchecked" when the agent never probed it
    (agent.mode passive, or no port or health endpoint to probe)."""
    if health is None:
        return {"state": "unchecked", "last_check": None, "last_error": ""}
    return {"state": health.state, "last_check": health.last_check,
            "last_error": health.last_error}


def target_dict(t: colony_pb2.Target) -> dict:
    """A resolved target as the keys its results carry (agent, not agent_id): the one shape
    of every target this client returns (resolve, exec's on_targets, tap and trace).
    Plain field reads: json_format's MessageToDict costs ~50x more per target."""
    return {"agent": t.agent_id, "service": t.service, "namespace": t.namespace,
            "pod": t.pod, "container": t.container, "node": t.node}


def _result_dict(result: colony_pb2.TargetResult) -> dict:
    r, t = result.result, result.target
    return {
        "agent": t.agent_id, "service": t.service, "namespace": t.namespace, "pod": t.pod,
        "container": t.container, "node": t.node, "rc": r.exit_code,
        "stdout": r.stdout.decode("utf-8", "replace"),
        "stderr": r.stderr.decode("utf-8", "replace"),
        "duration": round(r.duration_seconds, 6), "truncated": r.truncated,
        "timed_out": r.timed_out, "error": r.error, "status": result.status,
        "audit_id": result.audit_id, "finished_audit_id": result.finished_audit_id,
    }
