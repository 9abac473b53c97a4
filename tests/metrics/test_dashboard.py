"""Issue 13, Metrics: "A Grafana dashboard (JSON) for these metrics ships with the
collection, and a test loads it and checks every query names a metric that exists."

"Exists" is checked against what real processes expose: a colony after an exec, a host
agent, a DaemonSet agent on the API server fixture and a `coral webhook serve` process,
each scraped over HTTP(S) like Prometheus would.

COMPONENT TEST: the DaemonSet agent scraped here runs as a plain process (NodeAgentProc);
the image-run DaemonSet pods serve the same /metrics (tests/kube_e2e/test_daemonset.py).
"""

from __future__ import annotations

import json
import pathlib
import re
import ssl
import subprocess
import urllib.request

from prometheus_client import parser

from coral_lib.webhook import certs
from tests.daemonset import conftest as daemonset
from tests.metrics import conftest
from tests.support import coral_procs, kube_identity, scrape
from tests.support.kubeapi import KubeAPIServer

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "files" / "grafana" / "coral-dashboard.json"
METRIC = re.compile(r"\bcoral_[a-z0-9_]+\b")


def queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, rows included."""
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found += [(inner["title"], t["expr"]) for t in inner.get("targets", [])]
    return found


def test_dashboard_is_grafana_json_with_a_query_per_panel():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "coral-overview" and dashboard["schemaVersion"] >= 36
    graphs = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert graphs and all(p.get("targets") for p in graphs)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    assert all(METRIC.search(expr) for _, expr in queries(dashboard)), \
        "every query reads at least one Coral metric"


def _webhook_names(tmp_path: pathlib.Path) -> set[str]:
    tls = certs.generate(service="coral-webhook", namespace="coral-system", ips=["127.0.0.1"])
    folder = certs.write_files(tmp_path / "webhook-tls", tls)
    port = coral_procs.free_port()
    proc = subprocess.Popen(
        [*coral_procs.CORAL, "webhook", "serve", "--listen", f"127.0.0.1:{port}",
         "--cert", str(folder / "tls.crt"), "--key", str(folder / "tls.key"),
         "--namespace-labels", str(_no_labels(tmp_path))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    context = ssl.create_default_context(cadata=tls.ca_pem.decode())
    try:
        def text() -> str:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", timeout=5,
                                        context=context) as reply:
                return reply.read().decode()
        coral_procs.wait_for(lambda: _answers(text), what="the webhook's /metrics")
        return {s.name for f in parser.text_string_to_metric_families(text())
                for s in f.samples}
    finally:
        coral_procs.stop_process(proc)


def _no_labels(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "namespace-labels.yaml"
    path.write_text("{}\n")
    return path


def _answers(fetch) -> bool:
    try:
        fetch()
        return True
    except OSError:
        return False


def _node_agent_names(tmp_path: pathlib.Path) -> set[str]:
    with KubeAPIServer(tmp_path / "kubeapi", nodes=("node-a",), bookmark_interval=0.2) as api:
        daemonset.namespace(api, "shop")
        kubeconfig = kube_identity.colony_kubeconfig(api, tmp_path / "colony-kubeconfig")
        colony = coral_procs.Colony(tmp_path / "k8s-colony",
                                    args=("--token-review-kubeconfig", kubeconfig)).start()
        port = coral_procs.free_port()
        agent = daemonset.NodeAgentProc(tmp_path / "node-agents", colony, node="node-a",
                                        kubeapi=api,
                                        flags=["--metrics-listen", f"127.0.0.1:{port}"]).start()
        try:
            coral_procs.wait_registered(colony, ["node-node-a"])
            return scrape.names(port)
        finally:
            agent.stop()
            colony.stop()


def test_every_dashboard_query_names_a_metric_the_processes_expose(tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    watched = conftest.start_watched(tmp_path)
    try:
        coral_procs.wait_registered(watched.colony, [watched.agent.agent_id])
        assert watched.exec("true").returncode == 0
        exposed = scrape.names(watched.colony_metrics) | scrape.names(watched.agent_metrics)
    finally:
        watched.agent.stop()
        watched.colony.stop()
    exposed |= _node_agent_names(tmp_path) | _webhook_names(tmp_path)
    missing = sorted({(title, name) for title, expr in queries(dashboard)
                      for name in METRIC.findall(expr) if name not in exposed})
    assert not missing, f"dashboard queries name metrics no process exposes: {missing}"
