"""Where the colony's metrics are recorded: one gRPC interceptor at the edge of every RPC,
an observer on the audit log, and gauges read from the state at scrape time.

The servicers stay unaware of metrics: an operation's verb comes from the RPC table
(colony/verbs.py), its outcome from the status code the call ended with, and per-target
results from the OperateEvents the call streamed back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import grpc

from coral_lib import metrics
from coral_lib.colony import approvals as approvals_mod
from coral_lib.colony import policy, verbs

# Codes that mean "the caller is not who it must be" on each service. On the Mesh
# service PERMISSION_DENIED comes only from agent authentication (a revoked certificate,
# a join token for another agent); on the Colony service it is RBAC, not authentication.
AUTH_CODES = {
    verbs.COLONY_SERVICE: ("operator", {grpc.StatusCode.UNAUTHENTICATED}),
    verbs.MESH_SERVICE: ("agent", {grpc.StatusCode.UNAUTHENTICATED,
                                   grpc.StatusCode.PERMISSION_DENIED}),
}
OPERATIONS = {"Operate", "Shell", "Tap", "Trace"}


def outcome_name(code: grpc.StatusCode) -> str:
    """'ok', 'permission_denied', ...: the label value for a status code."""
    return code.name.lower()


def attach(state, m: metrics.Colony) -> None:
    """Wire the scrape-time gauges and the audit observer to a server.ColonyState."""
    started = time.time()
    state.audit.observer = audit_observer(m)
    m.watch_state(
        links=lambda: len(state.links.connected()),
        approvals=lambda: _pending(state.approvals),
        checkpoint_age=lambda: time.time() - max(state.audit.checkpointed_at, started),
        since_checkpoint=lambda: state.audit.since_checkpoint)


def _pending(approvals: approvals_mod.ApprovalStore) -> int:
    try:
        return len(approvals.pending())
    except approvals_mod.ApprovalError:
        return 0


def audit_observer(m: metrics.Colony) -> Callable[[str, Mapping[str, object], bool], None]:
    """Counts appends; a `refused` record with the rate-limit rule is a rate-limit refusal."""
    def observe(kind: str, fields: Mapping[str, object], written: bool) -> None:
        m.audit_appends.labels("ok" if written else "failed").inc()
        if kind == "refused" and fields.get("rule") == policy.RATE_LIMIT_RULE:
            m.rate_limited.labels(str(fields.get("verb", ""))).inc()
    return observe


class Interceptor(grpc.ServerInterceptor):
    """Times and counts every Colony and Mesh RPC. Put it first in the server's list so
    it also sees the calls that agent authentication refuses."""

    def __init__(self, m: metrics.Colony) -> None:
        self.metrics = m

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        service, _, name = details.method.lstrip("/").partition("/")
        if handler is None or service not in AUTH_CODES:
            return handler
        call = _Call(self.metrics, service=service, name=name)
        return _wrapped(handler, call)


class _Call:
    """What one call contributes to the metrics, recorded when it ends."""

    def __init__(self, m: metrics.Colony, *, service: str, name: str) -> None:
        self.m, self.service, self.name = m, service, name
        self.verb = verbs.RPC_VERBS.get(f"/{service}/{name}", "")

    def message(self, response) -> None:
        """Per-target results and the target count of an exec, from its events."""
        if self.name != "Operate":
            return
        kind = response.WhichOneof("event")
        if kind == "result":
            self.m.target_results.labels(self.verb, response.result.status or "unknown").inc()
        elif kind == "summary":
            self.m.operation_targets.labels(self.verb).observe(response.summary.targets)

    def ended(self, code: grpc.StatusCode, seconds: float, last) -> None:
        caller, auth_codes = AUTH_CODES[self.service]
        if code in auth_codes:
            self.m.auth_refusals.labels(caller).inc()
        if self.service == verbs.COLONY_SERVICE and self.name in OPERATIONS:
            self.m.operations.labels(self.verb, outcome_name(code)).inc()
            self.m.operation_seconds.labels(self.verb).observe(seconds)
        elif self.name == "Register":
            self.m.registrations.labels(registration_outcome(code, last)).inc()
        elif self.name == "Heartbeat":
            self.m.heartbeats.labels(heartbeat_outcome(code, last)).inc()


def registration_outcome(code: grpc.StatusCode, reply) -> str:
    if code != grpc.StatusCode.OK or reply is None:
        return "error"
    return "accepted" if reply.accepted else "refused"


def heartbeat_outcome(code: grpc.StatusCode, reply) -> str:
    if code != grpc.StatusCode.OK or reply is None:
        return "error"
    if reply.ok:
        return "ok"
    return "reregister" if reply.reregister else "refused"


def _code(context, failed: bool) -> grpc.StatusCode:
    """The status the call ends with: what abort()/set_code() set, else OK or UNKNOWN."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK


def _wrapped(handler, call: _Call):
    def unary(behavior):
        def run(request, context):
            started, reply, failed = time.monotonic(), None, True
            try:
                reply = behavior(request, context)
                failed = False
                return reply
            finally:
                call.ended(_code(context, failed), time.monotonic() - started, reply)
        return run

    def streaming(behavior):
        def run(request, context):
            started, failed, code = time.monotonic(), True, None
            try:
                for response in behavior(request, context):
                    call.message(response)
                    yield response
                failed = False
            except GeneratorExit:  # the client went away or cancelled
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                call.ended(code or _code(context, failed), time.monotonic() - started, None)
        return run

    wrap = streaming if handler.response_streaming else unary
    make = {(False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler}[
        (handler.request_streaming, handler.response_streaming)]
    behavior = (handler.unary_unary or handler.unary_stream or handler.stream_unary
                or handler.stream_stream)
    return make(wrap(behavior), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
