"""Issue 15, "A leaner agent": the agents write their /metrics with coral_lib.metrics_text
instead of prometheus_client (about 1.1 MB less heap). What they expose must not change:
the same families, types, help texts, samples and values as prometheus_client writes for
the same counters, gauges and histograms (less its optional `_created` samples), read
back by prometheus_client's own parser. The agents' scraped series are tested end to end
in test_agent_metrics.py and test_dashboard.py."""

from __future__ import annotations

import json
import subprocess
import sys

import prometheus_client
from prometheus_client import parser

from coral_lib import metrics, metrics_text

BUCKETS = (0.01, 0.5, 1.0, 300.0)


def _parsed(text: str) -> tuple[dict, dict]:
    families, samples = {}, {}
    for family in parser.text_string_to_metric_families(text):
        if family.name.endswith("_created"):  # prometheus_client's counters' own gauges
            continue
        families[family.name] = (family.type, family.documentation)
        for s in family.samples:
            if not s.name.endswith("_created"):
                samples[(s.name, frozenset(s.labels.items()))] = s.value
    return families, samples


def _both(build, act):
    """The same metrics built and driven on prometheus_client and on metrics_text."""
    theirs_registry = prometheus_client.CollectorRegistry()
    ours_registry = metrics_text.Registry()
    theirs = build(prometheus_client, theirs_registry)
    ours = build(metrics_text, ours_registry)
    act(theirs)
    act(ours)
    return (_parsed(prometheus_client.generate_latest(theirs_registry).decode()),
            _parsed(ours_registry.exposition()[0].decode()))


def test_counters_gauges_and_histograms_read_back_as_prometheus_client_writes_them():
    def build(lib, registry):
        return (lib.Counter("c_ops", 'Ops "quoted" \\ and\nnew line.', ["kind"],
                            registry=registry),
                lib.Counter("c_plain", "A plain counter.", registry=registry),
                lib.Gauge("g_up", "Up.", registry=registry),
                lib.Gauge("g_by", "By label.", ["provenance"], registry=registry),
                lib.Histogram("h_seconds", "Seconds.", ["kind", "outcome"], buckets=BUCKETS,
                              registry=registry),
                lib.Histogram("h_plain", "Plain.", buckets=BUCKETS, registry=registry))

    def act(m):
        ops, plain, up, by, hist, hplain = m
        ops.labels("exec").inc()
        ops.labels('we"ird\\la\nbel').inc(2)
        plain.inc(3)
        up.set(1)
        up.set(0.5)
        by.labels("discovered").set(110)
        by.labels("explicit").set(0)
        for value, outcome in ((0.001, "ok"), (0.01, "ok"), (0.4, "ok"), (7.0, "failed"),
                               (1e6, "failed"), (300.0, "ok")):
            hist.labels("exec", outcome).observe(value)
        hist.labels("exec", "timeout")  # created at zero, as metrics.Agent does
        hplain.observe(0.5)

    theirs, ours = _both(build, act)
    assert ours == theirs


def test_metrics_agent_exposes_what_it_exposed_with_prometheus_client():
    """Families, types and help texts of metrics.Agent, written by metrics_text, against
    the same definitions registered on prometheus_client."""
    agent = metrics.Agent()

    class Stats:
        lists, watches, gone, errors = 2, 3, 1, 0

    agent.watch_pods(Stats())
    agent.discovered(0.02, ["discovered", "discovered", "explicit"])
    agent.operation("exec", 0.3, "ok")
    agent.operation("exec", 7.0, "failed")
    agent.operation("tap", 0.0, "started")
    agent.link(True)
    agent.link(True, reconnect=True)
    families, samples = _parsed(metrics.exposition(agent.registry)[0].decode())
    assert families["coral_agent_link_reconnects"] == ("counter", "Times the link to the "
                                                       "colony was opened again after it "
                                                       "was lost.")
    assert families["coral_agent_operation_duration_seconds"][0] == "histogram"
    assert families["coral_agent_services"][0] == "gauge"
    assert samples[("coral_agent_pod_lists_total", frozenset())] == 2
    assert samples[("coral_agent_pod_watch_gone_total", frozenset())] == 1
    assert samples[("coral_agent_link_reconnects_total", frozenset())] == 1
    assert samples[("coral_agent_stream_operations_total", frozenset({("kind", "tap")}))] == 1
    assert samples[("coral_agent_services", frozenset({("provenance", "discovered")}))] == 2
    ok = frozenset({("kind", "exec"), ("outcome", "ok")})
    assert samples[("coral_agent_operation_duration_seconds_count", ok)] == 1
    assert samples[("coral_agent_operation_duration_seconds_bucket",
                    ok | {("le", "0.25")})] == 0
    assert samples[("coral_agent_operation_duration_seconds_bucket",
                    ok | {("le", "0.5")})] == 1
    assert agent.registry.get_sample_value("coral_agent_operation_duration_seconds_count",
                                           {"kind": "exec", "outcome": "failed"}) == 1


def test_an_agent_serving_metrics_never_imports_prometheus_client():
    code = ("import json, sys\n"
            "from coral_lib import endpoint, metrics\n"
            "m = metrics.Agent()\n"
            "status, body, ctype = endpoint.answer(endpoint.Routes(registry=m.registry), "
            "'/metrics')\n"
            "print(json.dumps([status, ctype, 'prometheus_client' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == [200, "text/plain; version=0.0.4; charset=utf-8", False]


def test_a_negative_counter_increment_and_wrong_labels_are_refused():
    registry = metrics_text.Registry()
    counter = metrics_text.Counter("c", "C.", ["kind"], registry=registry)
    for bad in (lambda: counter.labels("a").inc(-1), lambda: counter.labels("a", "b")):
        try:
            bad()
        except ValueError as exc:
            assert "c:" in str(exc)
        else:
            raise AssertionError("accepted")
