"""Issue 13, Metrics: an agent's /metrics, scraped from real agent processes.

Acceptance: "agent — discovery cycle duration, watch restarts and relists, services by
provenance, operation durations, link reconnects".

COMPONENT TEST: the DaemonSet agent runs as a plain process (NodeAgentProc) against the API
server fixture, to count its lists and watches; the image-run DaemonSet agent's readiness
probe is tested end to end in tests/kube_e2e/test_daemonset.py.
"""

from __future__ import annotations

from tests.daemonset import conftest as daemonset
from tests.metrics import conftest
from tests.support import coral_procs, kube_identity, scrape
from tests.support.kubeapi import KubeAPIServer


def test_metrics_agent_times_discovery_and_counts_services_by_provenance(
        watched: conftest.Watched):
    first = scrape.samples(watched.agent_metrics)
    coral_procs.wait_for(
        lambda: scrape.value(scrape.samples(watched.agent_metrics),
                             "coral_agent_discovery_duration_seconds_count")
        > scrape.value(first, "coral_agent_discovery_duration_seconds_count"),
        what="another discovery cycle (pollInterval 1s)")
    found = scrape.samples(watched.agent_metrics)
    assert scrape.value(found, "coral_agent_discovery_duration_seconds_sum") > 0
    assert scrape.value(found, "coral_agent_discovery_last_success_timestamp_seconds") > 0
    # a host agent discovers listening sockets (the colony's own port among them) and
    # registers the one service its config names
    assert scrape.value(found, "coral_agent_services", provenance="discovered") > 0
    assert scrape.value(found, "coral_agent_services", provenance="explicit") == 1


def test_metrics_agent_times_operations_by_outcome(watched: conftest.Watched):
    assert watched.exec("true").returncode == 0
    assert watched.exec("sh", "-c", "exit 3").returncode != 0
    found = scrape.samples(watched.agent_metrics)
    assert scrape.value(found, "coral_agent_operation_duration_seconds_count",
                        kind="exec", outcome="ok") == 1
    assert scrape.value(found, "coral_agent_operation_duration_seconds_count",
                        kind="exec", outcome="failed") == 1


def test_metrics_agent_counts_link_reconnects(watched: conftest.Watched):
    found = scrape.samples(watched.agent_metrics)
    assert scrape.value(found, "coral_agent_link_up") == 1
    assert scrape.value(found, "coral_agent_link_reconnects_total") == 0
    watched.colony.stop()
    coral_procs.wait_for(lambda: scrape.value(scrape.samples(watched.agent_metrics),
                                              "coral_agent_link_up") == 0,
                         what="link_up 0 while the colony is down")
    watched.colony.start()  # same port and data dir: the agent comes back by itself
    coral_procs.wait_for(lambda: scrape.value(scrape.samples(watched.agent_metrics),
                                              "coral_agent_link_up") == 1, timeout=40,
                         what="link_up 1 after the colony is back")
    assert scrape.value(scrape.samples(watched.agent_metrics),
                        "coral_agent_link_reconnects_total") == 1


def test_metrics_node_agent_counts_pod_relists_and_watch_restarts(tmp_path):
    """A real `coral agent node` on the API server fixture: a forced 410 Gone makes it list
    again, and every watch after the first is a restart."""
    with KubeAPIServer(tmp_path / "kubeapi", nodes=("node-a",), bookmark_interval=0.2) as api:
        daemonset.namespace(api, "shop")
        api.store.create(daemonset.pod("web-1"))
        kubeconfig = kube_identity.colony_kubeconfig(api, tmp_path / "colony-kubeconfig")
        colony = coral_procs.Colony(tmp_path / "colony",
                                    args=("--token-review-kubeconfig", kubeconfig)).start()
        port = coral_procs.free_port()
        agent = daemonset.NodeAgentProc(
            tmp_path / "agents", colony, node="node-a", kubeapi=api,
            flags=["--metrics-listen", f"127.0.0.1:{port}"]).start()
        try:
            coral_procs.wait_registered(colony, ["node-node-a"])
            coral_procs.wait_for(lambda: scrape.get(port, "/metrics")[0] == 200)
            found = scrape.samples(port)
            assert scrape.value(found, "coral_agent_pod_lists_total") == 1
            assert scrape.value(found, "coral_agent_services", provenance="discovered") == 1
            api.faults.force_gone()
            api.compact()
            api.store.create(daemonset.pod("web-2"))
            api.faults.drop_watches()  # the watch restarts at an expired resourceVersion
            coral_procs.wait_for(
                lambda: scrape.value(scrape.samples(port), "coral_agent_pod_lists_total") >= 2,
                what="a relist after 410 Gone")
            found = scrape.samples(port)
            assert scrape.value(found, "coral_agent_pod_watch_gone_total") >= 1
            assert scrape.value(found, "coral_agent_pod_watches_total") >= 2
        finally:
            agent.stop()
            colony.stop()
