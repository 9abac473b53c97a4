"""Limits in front of the colony: what an unauthenticated or careless caller can cost it.

* `Limits`: message sizes (receive, one request's argv/stdin/env, output per stream),
  concurrent RPCs, open streams per peer, failed logins per peer. Configured by the
  colony settings key `limits` (config/models.py). Agent calls are verified before their
  stream is read (colony/agentauth.py), so a stream that never authenticates holds no
  handler.
* `PeerGuard`: failed logins and refused pre-auth requests per peer address. The first
  failure in a window and the moment a peer is throttled are audited (two records per
  peer per window at most, every untrusted field clipped); past `login_failures` in a
  window every attempt from the peer is refused with RESOURCE_EXHAUSTED and retry-after,
  good credentials included (else throttling would still answer "this one is right").
* `StreamCap`: a gRPC interceptor counting open client-streaming RPCs (Link, Shell) per
  peer address.
* `exec_problem` / `size_problem` / `capped_output`: colony-side caps on what is forwarded
  to an agent (refused) and on the output asked for (capped), so no request or reply can
  exceed an agent link's message size and drop the link.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable

import grpc

from coral_lib import validate
from coral_lib.colony import routing

log = logging.getLogger(__name__)
MiB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Limits:
    """Documented defaults; the colony settings key `limits` overrides them."""

    receive_bytes: int = 16 * MiB      # largest message the colony parses (any RPC)
    request_bytes: int = 1 * MiB       # one exec's argv+stdin+env; one tap/trace/shell frame
    output_bytes: int = 4 * MiB        # an exec's max_output_bytes per stream is capped here
    concurrent_rpcs: int = 2048        # beyond this the colony answers RESOURCE_EXHAUSTED
    streams_per_peer: int = 64         # open Link/Shell streams from one peer address
    login_failures: int = 10           # failed logins per peer per window before throttling
    login_window: float = 60.0         # seconds

    def __post_init__(self) -> None:
        for name in ("receive_bytes", "request_bytes", "output_bytes", "concurrent_rpcs",
                     "streams_per_peer", "login_failures"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"limits.{_camel(name)}: expected a whole number >= 1, got "
                                 f"{getattr(self, name)!r}")
        if not self.login_window > 0:
            raise ValueError("limits.loginWindow: expected more than 0 seconds")
        # An agent's reply carries stdout and stderr of up to output_bytes each.
        needed = 2 * self.output_bytes + self.request_bytes + MiB
        if self.receive_bytes < needed:
            raise ValueError(
                f"limits.receiveBytes ({self.receive_bytes}) must be at least 2 x outputBytes "
                f"+ requestBytes + 1 MiB = {needed}, so an agent's largest reply fits")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def peer_host(peer: str) -> str:
    """'ipv4:10.0.0.5:51234' -> '10.0.0.5'; 'ipv6:[::1]:5' -> '::1'; else as given."""
    kind, _, rest = (peer or "").partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:].partition("]")[0]
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return validate.clip(validate.printable(peer or "unknown"), 64)


# -- failed logins and refused pre-auth requests ---------------------------------------

@dataclasses.dataclass
class _Window:
    start: float
    failures: int = 0


class PeerGuard:
    """Per peer address: count failures in fixed windows; audit a bounded summary; throttle.

    `record(peer, what, reason, failures)` writes one audit record; it is called outside
    the lock, at most twice per peer per window."""

    def __init__(self, limits: Limits, *, record: Callable[[str, str, str, int], None],
                 clock: Callable[[], float] = time.monotonic, max_peers: int = 10_000) -> None:
        self.limits, self._record, self._clock, self._max = limits, record, clock, max_peers
        self._lock = threading.Lock()
        self._peers: collections.OrderedDict[str, _Window] = collections.OrderedDict()

    def retry_after(self, peer: str) -> float:
        """Seconds until `peer` may try again (0.0: it may now)."""
        host = peer_host(peer)
        with self._lock:
            window = self._peers.get(host)
            if window is None:
                return 0.0
            left = window.start + self.limits.login_window - self._clock()
            return left if left > 0 and window.failures >= self.limits.login_failures else 0.0

    def failed(self, peer: str, *, what: str, reason: str) -> None:
        """One failed login (or refused pre-auth request) from `peer`."""
        host, now = peer_host(peer), self._clock()
        with self._lock:
            window = self._peers.get(host)
            if window is None or now - window.start >= self.limits.login_window:
                window = self._peers[host] = _Window(start=now)
            self._peers.move_to_end(host)
            while len(self._peers) > self._max:
                self._peers.popitem(last=False)
            window.failures += 1
            count = window.failures
        if count == 1 or count == self.limits.login_failures:
            note = (f"; throttled for {self.limits.login_window:.0f}s after {count} failures"
                    if count == self.limits.login_failures else "")
            try:
                self._record(host, what, validate.clip(validate.printable(reason)) + note, count)
            except Exception as exc:  # a full disk must not turn a refusal into a crash
                log.error("audit of a failed login from %s not written: %s", host, exc)


def throttled(context: grpc.ServicerContext, guard: PeerGuard | None) -> None:
    """Abort RESOURCE_EXHAUSTED (with a retry-after trailer) when the caller's peer is
    throttled for failed logins; else return."""
    if guard is None:
        return
    wait = guard.retry_after(context.peer())
    if wait > 0:
        context.set_trailing_metadata((("retry-after", f"{wait:.1f}"),))
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                      f"too many failed logins from {peer_host(context.peer())}; "
                      f"retry in {wait:.1f}s")


# -- streams ------------------------------------------------------------------------------

class _Counter:
    """Named counts with a ceiling each; thread-safe."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def enter(self, key: str) -> bool:
        with self._lock:
            if self._counts[key] >= self.ceiling:
                return False
            self._counts[key] += 1
            return True

    def leave(self, key: str) -> None:
        with self._lock:
            self._counts[key] -= 1
            if self._counts[key] <= 0:
                del self._counts[key]


class StreamCap(grpc.ServerInterceptor):
    """At most `streams_per_peer` open client-streaming RPCs (Link, Shell) per peer address:
    each holds a server thread for as long as it is open."""

    def __init__(self, limits: Limits) -> None:
        self.open = _Counter(limits.streams_per_peer)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not handler.request_streaming:
            return handler
        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(handler.stream_stream), handler.request_deserializer,
                handler.response_serializer)
        return grpc.stream_unary_rpc_method_handler(
            self._wrap_unary(handler.stream_unary), handler.request_deserializer,
            handler.response_serializer)

    def _admit(self, context) -> None:
        host = peer_host(context.peer())
        if not self.open.enter(host):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"too many open streams from {host} (at most "
                          f"{self.open.ceiling}; colony setting limits.streamsPerPeer)")
        context.add_callback(lambda: self.open.leave(host))

    def _wrap_stream(self, behavior):
        def wrapped(request_iterator, context):
            self._admit(context)
            yield from behavior(request_iterator, context)
        return wrapped

    def _wrap_unary(self, behavior):
        def wrapped(request_iterator, context):
            self._admit(context)
            return behavior(request_iterator, context)
        return wrapped


# -- sizes ----------------------------------------------------------------------------------

def exec_problem(request, limits: Limits) -> str:
    """'' when an ExecRequest fits the colony's caps, else why not (INVALID_ARGUMENT)."""
    size = (sum(len(a.encode()) for a in request.argv) + len(request.stdin)
            + sum(len(k.encode()) + len(v.encode()) for k, v in request.env.items())
            + len(request.cwd.encode()))
    if size > limits.request_bytes:
        return (f"exec argv, stdin and env are {size} bytes; the colony forwards at most "
                f"{limits.request_bytes} (colony setting limits.requestBytes): send large "
                "input as a file")
    if request.max_output_bytes < 0:
        return (f"exec max_output_bytes {request.max_output_bytes}: expected 0 (the agent's "
                "default) or a positive number of bytes per stream")
    return ""


def capped_output(max_output_bytes: int, limits: Limits) -> int:
    """The max_output_bytes forwarded to an agent: what was asked, at most
    limits.outputBytes per stream, so the agent's reply fits limits.receiveBytes."""
    return min(max_output_bytes, limits.output_bytes)


def size_problem(message, what: str, limits: Limits) -> str:
    """'' when one message forwarded to an agent fits limits.requestBytes, else why not."""
    size = message.ByteSize()
    if size > limits.request_bytes:
        return (f"{what} is {size} bytes; the colony forwards at most {limits.request_bytes} "
                "(colony setting limits.requestBytes)")
    return ""


# -- names ----------------------------------------------------------------------------------

_SERVICE_NAMES = (("component_name", "service", True), ("namespace", "namespace", False),
                  ("pod_name", "pod", False), ("container_name", "container", False),
                  ("node_name", "node", False))


def registration_problem(*, agent_id: str, node_name: str = "", labels=None,
                         node_labels=None) -> str:
    """'' when the names an agent gives for itself (id, node, labels) are acceptable, else
    the first problem, naming the field: the registration is refused."""
    try:
        validate.check_name("agent id", agent_id, field="agent_id")
        validate.check_name("node", node_name, field="node_name", required=False)
        _check_labels(labels or {}, "labels")
        _check_labels(node_labels or {}, "node_labels")
    except validate.InvalidName as exc:
        return str(exc)
    return ""


def split_services(services) -> tuple[list, list[str]]:
    """(services whose names and labels are acceptable, one problem per other service).
    Services come from discovery of processes anyone on a host may name, so a bad one is
    skipped rather than refusing the whole registration."""
    kept, problems = [], []
    for i, svc in enumerate(services):
        try:
            _check_service(svc)
        except validate.InvalidName:
            problems.append(_service_problem(i, svc))
            continue
        kept.append(svc)
    return kept, problems


def _check_service(svc, i: int | None = None) -> None:
    """InvalidName unless every name and label of `svc` is acceptable. The message names the
    field (services[i].namespace) only when `i` is given: building each field's name for
    every check was a fifth of the check's time (a registration checks hundreds), so a
    refused service is checked once more, with `i`, to say where (_service_problem)."""
    named = i is not None
    for attr, kind, required in _SERVICE_NAMES:
        validate.check_name(kind, getattr(svc, attr), required=required,
                            field=f"services[{i}].{attr}" if named else "")
    _check_labels(svc.labels, f"services[{i}].labels" if named else "")
    _check_labels(svc.node_labels, f"services[{i}].node_labels" if named else "")


def _service_problem(i: int, svc) -> str:
    """The first problem of services[i] (one _check_service refused), naming the field."""
    try:
        _check_service(svc, i)
    except validate.InvalidName as exc:
        return str(exc)
    return f"services[{i}]: refused"  # not reached: the same checks run both times


def _check_labels(labels, field: str) -> None:
    """Every key and value of `labels` acceptable; messages name `field`, or only the kind
    when it is empty (the unnamed fast pass of _check_service)."""
    for key, value in labels.items():
        validate.check_name("label key", key, field=f"{field} key" if field else "")
        validate.check_name("label value", value, required=False,
                            field=f"{field}[{validate.clip(key, 64)}]" if field else "")


# one home for the rule, shared with the operator's targeting builder (pure)
targeting_problem = routing.targeting_problem


MAX_PODS = 1000  # per agent: kubelet's maxPods is 110 by default, 250 at most in practice
HEALTH_STATES = ("healthy", "unhealthy", "unknown")


def split_pods(pods) -> list:
    """The pods of a DaemonSet agent's list whose names and labels are acceptable (up to
    MAX_PODS); a bad one is skipped, like a bad service."""
    kept = []
    for pod in list(pods)[:MAX_PODS]:
        try:
            validate.check_name("namespace", pod.namespace, field="pods.namespace")
            validate.check_name("pod", pod.name, field="pods.name")
            for container in pod.containers:
                validate.check_name("container", container, field="pods.containers")
            _check_labels(pod.labels, "pods.labels")
        except validate.InvalidName:
            continue
        kept.append(pod)
    return kept


def split_health(health) -> list:
    """Health reports with a known state and bounded text; others are skipped."""
    kept = []
    for item in list(health)[:MAX_PODS * 4]:
        if item.state in HEALTH_STATES and len(item.service_key) <= 1024:
            item.last_error = validate.clip(validate.printable(item.last_error), 300)
            kept.append(item)
    return kept
