"""Churn of 1,000 pods on three nodes watched by three real-client watchers (one per node,
fieldSelector spec.nodeName): each watcher's view converges to exactly the store's pods on
its node. Plus the `serve` CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from kubernetes import client, config, watch

from tests.support import tools
from tests.support.kubeapi import KubeAPIServer, churn

NODES = ["churn-n1", "churn-n2", "churn-n3"]


def _watcher(kubeconfig: str, node: str, view: dict, done: threading.Event, rv: str):
    api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    w = watch.Watch()
    for ev in w.stream(api.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node}",
                       resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=60):
        if ev["type"] == "BOOKMARK":
            continue
        meta = ev["object"].metadata
        key = (meta.namespace, meta.name)
        if ev["type"] == "DELETED":
            view.pop(key, None)
        else:
            view[key] = dict(meta.labels or {})
        if meta.name == f"sentinel-{node}":
            done.set()
            w.stop()


def test_churn_1000_pods_three_watchers_converge(tmp_path):
    with KubeAPIServer(tmp_path, nodes=NODES) as server:
        rv = str(server.store.rv)
        views = {n: {} for n in NODES}
        dones = {n: threading.Event() for n in NODES}
        threads = [threading.Thread(target=_watcher, args=(server.kubeconfig_path, n,
                                                           views[n], dones[n], rv), daemon=True)
                   for n in NODES]
        for t in threads:
            t.start()
        start = time.monotonic()
        result = churn.churn(server, pods=1000, nodes=NODES, rate=0, relabel=True,
                             delete=True, namespaces=["team-a", "team-b"], seed=11)
        for n in NODES:
            server.store.create(churn.make_pod(name=f"sentinel-{n}", namespace="team-a",
                                               node=n, rng=__import__("random").Random(0)))
        for n in NODES:
            assert dones[n].wait(60), f"watcher for {n} did not catch up"
        elapsed = time.monotonic() - start
        assert (result.created, result.relabelled, result.deleted) == (1000, 500, 333)
        for n in NODES:
            expected = {(p["metadata"]["namespace"], p["metadata"]["name"]):
                        p["metadata"]["labels"]
                        for p in server.store.list("pods", field_selector=f"spec.nodeName={n}")}
            assert views[n] == expected
        print(f"churn: {result.created + result.relabelled + result.deleted} ops in "
              f"{result.seconds:.2f}s, watchers converged after {elapsed:.2f}s")


def test_churn_rate_is_respected(tmp_path):
    with KubeAPIServer(tmp_path, nodes=["n"]) as server:
        result = churn.churn(server, pods=20, nodes=["n"], rate=100, relabel=False,
                             delete=False, namespaces=["default"], seed=1)
        assert result.created == 20 and result.seconds >= 0.18
        assert len(result.expected) == 20


def test_serve_cli_writes_kubeconfig_and_serves_until_killed(tmp_path):
    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.kubeapi", "serve",
                             "--state-dir", str(state), "--node", "cli-node"],
                            stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        line = proc.stdout.readline()
        assert "serving https://127.0.0.1:" in line
        out = subprocess.run([tools.kubectl(), "--kubeconfig", str(state / "kubeconfig"),
                              "get", "nodes", "-o", "name"], capture_output=True, text=True,
                             timeout=30)
        assert out.stdout.split() == ["node/cli-node"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
