"""Issue 13, Metrics: the colony's /metrics, scraped from a real colony after real work.

Acceptance: "colony — operations by verb and outcome with latency histograms, targets per
operation, agent links connected, registrations, heartbeats, audit appends and
checkpoint age, approvals pending, rate-limit refusals, refused authentications",
"served on a separate listener (--metrics-listen)".
"""

from __future__ import annotations

from prometheus_client import REGISTRY

from coral_lib import metrics
from tests.metrics import conftest
from tests.support import coral_procs, scrape


def test_metrics_colony_counts_operations_by_verb_and_outcome(watched: conftest.Watched):
    before = scrape.samples(watched.colony_metrics)
    assert watched.exec("true").returncode == 0
    assert watched.exec("false").returncode != 0
    found = scrape.samples(watched.colony_metrics)

    def moved(name: str, **labels: str) -> float:
        return scrape.value(found, name, **labels) - scrape.value(before, name, **labels)

    # The operator's calls both ended OK (a failing command is a result, not a failed RPC)
    assert moved("coral_colony_operations_total", verb="exec", outcome="ok") == 2
    assert moved("coral_colony_operation_duration_seconds_count", verb="exec") == 2
    assert moved("coral_colony_operation_duration_seconds_bucket", verb="exec", le="+Inf") == 2
    assert moved("coral_colony_operation_duration_seconds_sum", verb="exec") > 0
    # ... and the per-target statuses say which command failed
    assert moved("coral_colony_target_results_total", verb="exec", status="ok") == 1
    assert moved("coral_colony_target_results_total", verb="exec", status="failed") == 1
    # targets per operation: two operations of one target each
    assert moved("coral_colony_operation_targets_count", verb="exec") == 2
    assert moved("coral_colony_operation_targets_sum", verb="exec") == 2
    # each operation audits a start and an end record
    assert moved("coral_colony_audit_appends_total", outcome="ok") >= 4


def test_metrics_colony_counts_refused_authentications_and_their_operations(
        watched: conftest.Watched):
    before = scrape.samples(watched.colony_metrics)
    run = watched.exec("true", token="guessed-token-7f3a9c")
    assert run.returncode != 0 and "unknown operator token" in run.stderr
    found = scrape.samples(watched.colony_metrics)
    # the attacker's guess, the agent's id and command words never become label values
    text = scrape.get(watched.colony_metrics, "/metrics")[1]
    assert "guessed-token-7f3a9c" not in text and "host-1" not in text
    assert {k for (_, labels) in found for k, _ in labels} <= {
        "verb", "outcome", "status", "caller", "le"}
    assert scrape.value(found, "coral_colony_auth_refusals_total", caller="operator") == \
        scrape.value(before, "coral_colony_auth_refusals_total", caller="operator") + 1
    assert scrape.value(found, "coral_colony_operations_total", verb="exec",
                        outcome="unauthenticated") == 1
    assert scrape.value(found, "coral_colony_target_results_total", verb="exec",
                        status="ok") == scrape.value(before, "coral_colony_target_results_total",
                                                     verb="exec", status="ok")


def test_metrics_colony_counts_registrations_heartbeats_and_links(watched: conftest.Watched):
    found = scrape.samples(watched.colony_metrics)
    assert scrape.value(found, "coral_colony_registrations_total", outcome="accepted") >= 1
    assert scrape.value(found, "coral_colony_agent_links") == 1
    # the test agent heartbeats every second
    coral_procs.wait_for(lambda: scrape.value(scrape.samples(watched.colony_metrics),
                                              "coral_colony_heartbeats_total", outcome="ok") >= 2,
                         what="two heartbeats counted")
    watched.agent.stop()
    coral_procs.wait_for(lambda: scrape.value(scrape.samples(watched.colony_metrics),
                                              "coral_colony_agent_links") == 0,
                         what="the link gauge drops to 0 when the agent stops")


def test_metrics_colony_reports_checkpoint_age_and_pending_approvals(watched: conftest.Watched):
    found = scrape.samples(watched.colony_metrics)
    assert scrape.value(found, "coral_colony_approvals_pending") == 0
    age = scrape.value(found, "coral_colony_audit_checkpoint_age_seconds")
    assert 0 < age < 600
    assert ("coral_colony_audit_records_since_checkpoint", frozenset()) in found


def test_metrics_colony_counts_rate_limit_refusals(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text('rateLimits: {perIdentity: "1/m, burst=1"}\n'
                      "rules: [{name: all, identities: ['*'], verbs: ['*']}]\n")
    watched = conftest.start_watched(tmp_path, colony_args=("--policy", str(policy)))
    try:
        coral_procs.wait_registered(watched.colony, [watched.agent.agent_id])
        assert watched.exec("true").returncode == 0
        refused = watched.exec("true")
        assert refused.returncode != 0 and "rate" in refused.stderr.lower()
        found = scrape.samples(watched.colony_metrics)
        assert scrape.value(found, "coral_colony_rate_limit_refusals_total", verb="exec") == 1
        assert scrape.value(found, "coral_colony_operations_total", verb="exec",
                            outcome="resource_exhausted") == 1
    finally:
        watched.agent.stop()
        watched.colony.stop()


def test_metrics_use_a_per_process_registry_not_the_global_one():
    """Two colonies' metrics in one interpreter never mix, and nothing is registered on
    prometheus_client's global REGISTRY (tests run colonies, agents and webhooks together)."""
    first, second = metrics.Colony(), metrics.Colony()
    first.operations.labels("exec", "ok").inc()
    assert first.registry.get_sample_value(
        "coral_colony_operations_total", {"verb": "exec", "outcome": "ok"}) == 1
    assert second.registry.get_sample_value(
        "coral_colony_operations_total", {"verb": "exec", "outcome": "ok"}) == 0
    metrics.Agent(), metrics.Webhook()
    assert not [m.name for m in REGISTRY.collect() if m.name.startswith("coral_")]
