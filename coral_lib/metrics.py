"""Every Prometheus metric Coral exposes, defined once (README "Operating Coral" lists them).

Each process builds its own set on its own CollectorRegistry (never the global one), so
a test can run a colony, agents and a webhook in one interpreter without their counters
mixing. Label values that are known in advance are created at zero, so a dashboard or
an alert finds the series before the first event. The HTTP listener that serves them is
coral_lib.endpoint; who records what is decided at the edges (colony/instrument.py, the
agent's runner and link, the webhook server).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from coral_lib import metrics_text as text

if TYPE_CHECKING:
    from prometheus_client import core

# The colony and the webhook use prometheus_client; the agents' metrics (class Agent) are
# written by coral_lib.metrics_text, so an agent never imports prometheus_client (about
# 1.1 MB of heap: issue 15, a leaner agent).

# Operations wait for approvals and run user commands: seconds to minutes.
OPERATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                     300.0, 1800.0)
TARGET_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 20000)
DISCOVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
WEBHOOK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

OPERATION_VERBS = ("exec", "shell", "tap", "trace")
TARGET_STATUSES = ("ok", "failed", "error", "timeout", "refused", "interrupted", "skipped")
PROVENANCES = ("unknown", "explicit", "discovered", "overridden")
WEBHOOK_RESULTS = ("injected", "skipped", "ignored", "warning", "bad_request")


def exposition(registry: core.CollectorRegistry | text.Registry) -> tuple[bytes, str]:
    """The registry in Prometheus text format, and its content type."""
    if isinstance(registry, text.Registry):
        return registry.exposition()
    import prometheus_client

    return prometheus_client.generate_latest(registry), prometheus_client.CONTENT_TYPE_LATEST


def _zero(metric, *label_sets: Iterable[str]) -> None:
    for labels in label_sets:
        metric.labels(*labels)


class Colony:
    """The colony's metrics. Gauges that read state at scrape time take callables."""

    def __init__(self, registry: core.CollectorRegistry | None = None) -> None:
        import prometheus_client

        self.registry = r = registry or prometheus_client.CollectorRegistry()
        self.operations = prometheus_client.Counter(
            "coral_colony_operations", "Operations (exec, shell, tap, trace) by verb and "
            "outcome: the gRPC status the operator's call ended with, lowercased.",
            ["verb", "outcome"], registry=r)
        self.operation_seconds = prometheus_client.Histogram(
            "coral_colony_operation_duration_seconds", "Time from an operation's call to its "
            "end, approval wait included.", ["verb"], buckets=OPERATION_BUCKETS, registry=r)
        self.operation_targets = prometheus_client.Histogram(
            "coral_colony_operation_targets", "Targets each exec operation resolved to.",
            ["verb"], buckets=TARGET_BUCKETS, registry=r)
        self.target_results = prometheus_client.Counter(
            "coral_colony_target_results", "Per-target results of exec operations by status.",
            ["verb", "status"], registry=r)
        self.registrations = prometheus_client.Counter(
            "coral_colony_registrations", "Agent registrations by outcome (accepted, refused, "
            "error).", ["outcome"], registry=r)
        self.heartbeats = prometheus_client.Counter(
            "coral_colony_heartbeats", "Agent heartbeats by outcome (ok, reregister, refused, "
            "error).", ["outcome"], registry=r)
        self.auth_refusals = prometheus_client.Counter(
            "coral_colony_auth_refusals", "Calls refused because the caller could not be "
            "authenticated (operator: bad token or none; agent: bad proof, revoked, join "
            "refused).", ["caller"], registry=r)
        self.rate_limited = prometheus_client.Counter(
            "coral_colony_rate_limit_refusals", "Targets refused by the rate limiter, by verb.",
            ["verb"], registry=r)
        self.audit_appends = prometheus_client.Counter(
            "coral_colony_audit_appends", "Audit records appended, by outcome (ok, failed).",
            ["outcome"], registry=r)
        _zero(self.operations, *((v, "ok") for v in OPERATION_VERBS))
        _zero(self.operation_seconds, *((v,) for v in OPERATION_VERBS))
        _zero(self.operation_targets, ("exec",))
        _zero(self.target_results, *(("exec", s) for s in TARGET_STATUSES))
        _zero(self.registrations, ("accepted",), ("refused",), ("error",))
        _zero(self.heartbeats, ("ok",), ("reregister",), ("refused",), ("error",))
        _zero(self.auth_refusals, ("operator",), ("agent",))
        _zero(self.rate_limited, *((v,) for v in OPERATION_VERBS))
        _zero(self.audit_appends, ("ok",), ("failed",))

    def watch_state(self, *, links: Callable[[], float], approvals: Callable[[], float],
                    checkpoint_age: Callable[[], float],
                    since_checkpoint: Callable[[], float]) -> None:
        """Gauges read at scrape time from the colony's state."""
        import prometheus_client

        for name, doc, read in (
                ("coral_colony_agent_links", "Agents with an open link to this colony.", links),
                ("coral_colony_approvals_pending", "Approval requests waiting for a decision.",
                 approvals),
                ("coral_colony_audit_checkpoint_age_seconds", "Seconds since this colony last "
                 "wrote a signed audit checkpoint (since it started, before the first).",
                 checkpoint_age),
                ("coral_colony_audit_records_since_checkpoint", "Audit records written since the "
                 "last checkpoint (not yet covered by a signature).", since_checkpoint)):
            prometheus_client.Gauge(name, doc, registry=self.registry).set_function(read)


class Agent:
    """An agent's metrics (created only with --metrics-listen: the agent stays lean)."""

    def __init__(self, registry: text.Registry | None = None) -> None:
        self.registry = r = registry or text.Registry()
        self.discovery_seconds = text.Histogram(
            "coral_agent_discovery_duration_seconds", "Time one discovery cycle took "
            "(sources, filters and overrides).", buckets=DISCOVERY_BUCKETS, registry=r)
        self.discovery_last = text.Gauge(
            "coral_agent_discovery_last_success_timestamp_seconds", "Unix time of the last "
            "discovery cycle that completed.", registry=r)
        self.services = text.Gauge(
            "coral_agent_services", "Services the agent registers, by provenance.",
            ["provenance"], registry=r)
        self.operation_seconds = text.Histogram(
            "coral_agent_operation_duration_seconds", "Time the agent took to run one exec, "
            "by outcome (ok, failed, error, timeout, refused).", ["kind", "outcome"],
            buckets=OPERATION_BUCKETS, registry=r)
        self.streams = text.Counter(
            "coral_agent_stream_operations", "Shell, tap and trace operations started.",
            ["kind"], registry=r)
        self.link_up = text.Gauge(
            "coral_agent_link_up", "1 while the operation link to the colony is open.",
            registry=r)
        self.link_reconnects = text.Counter(
            "coral_agent_link_reconnects", "Times the link to the colony was opened again "
            "after it was lost.", registry=r)
        _zero(self.services, *((p,) for p in PROVENANCES))
        _zero(self.operation_seconds, ("exec", "ok"))
        _zero(self.streams, ("shell",), ("tap",), ("trace",))

    # The agent calls these through agent/observe.py's Recorder protocol.
    def discovered(self, seconds: float, provenances: Iterable[str]) -> None:
        self.discovery_seconds.observe(seconds)
        self.discovery_last.set(time.time())
        counts = dict.fromkeys(PROVENANCES, 0)
        for name in provenances:
            counts[name] = counts.get(name, 0) + 1
        for name, count in counts.items():
            self.services.labels(name).set(count)

    def operation(self, kind: str, seconds: float, outcome: str) -> None:
        if kind == "exec":
            self.operation_seconds.labels(kind, outcome).observe(seconds)
        else:
            self.streams.labels(kind).inc()

    def link(self, up: bool, *, reconnect: bool = False) -> None:
        self.link_up.set(1 if up else 0)
        if reconnect:
            self.link_reconnects.inc()

    def watch_pods(self, stats: object) -> None:
        """Expose a discovery.kubernetes.Stats (lists, watches, gone, errors) as counters."""
        self.registry.register(_WatchCollector(stats).collect)


class _WatchCollector:
    """The pod watcher's own counters, read at scrape time (the watcher stays unaware)."""

    FIELDS = (("coral_agent_pod_lists", "Full LISTs of the node's pods (the first, resyncs "
               "and relists after a 410 Gone or an error).", "lists"),
              ("coral_agent_pod_watches", "Pod WATCH calls started; each after the first "
               "is a restart.", "watches"),
              ("coral_agent_pod_watch_gone", "Watches that ended with 410 Gone (relist).",
               "gone"),
              ("coral_agent_pod_watch_errors", "Watch or list calls that failed.", "errors"))

    def __init__(self, stats: object) -> None:
        self.stats = stats

    def collect(self) -> list[text.FamilyData]:
        return [text.counter_family(name, doc, getattr(self.stats, field))
                for name, doc, field in self.FIELDS]


class Webhook:
    """The webhook's metrics (the same names it exposed before they moved here)."""

    def __init__(self, registry: core.CollectorRegistry | None = None) -> None:
        import prometheus_client

        self.registry = r = registry or prometheus_client.CollectorRegistry()
        self.requests = prometheus_client.Counter(
            "coral_webhook_requests", "Admission requests by result.", ["result"], registry=r)
        self.seconds = prometheus_client.Histogram(
            "coral_webhook_request_duration_seconds", "Time to answer one admission request.",
            buckets=WEBHOOK_BUCKETS, registry=r)
        _zero(self.requests, *((result,) for result in WEBHOOK_RESULTS))

    def observe(self, result: str, seconds: float) -> None:
        self.requests.labels(result).inc()
        self.seconds.observe(seconds)

    def count(self, result: str) -> int:
        """How many requests ended with `result` (tests read it)."""
        value = self.registry.get_sample_value("coral_webhook_requests_total",
                                               {"result": result})
        return int(value or 0)
