"""DaemonSet discovery latency and relist cost.

1. Pod event -> colony registry: a real colony process and a real `coral agent node`
   process watch the in-repo API server fixture; one pod at a time is created (a rolling
   window keeps 110 pods on the node, as kubelet's default max), and the time until the
   colony's ListServices shows it is taken. Median and p99 over 1,000 events
   (target: p99 < 500 ms).
2. Bursts: BURST pods created at once (back to back, as a Deployment scale-up does), the
   time from each pod's creation until the colony lists it; BURSTS bursts (each removed
   again before the next), so the percentiles stand on BURST x BURSTS samples.
3. Full relist CPU for a node with 110 pods: the calling thread's CPU time
   (time.thread_time, so the fixture's server threads are not counted) for one list +
   reconcile + node read, and for computing the final service set from the cache.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from coral_lib import config  # noqa: E402
from coral_lib.agent import node  # noqa: E402
from coral_lib.discovery import kubernetes  # noqa: E402
from tests.support import coral_procs, kube_identity  # noqa: E402
from tests.support.kubeapi import KubeAPIServer  # noqa: E402

EVENTS = int(os.environ.get("BENCH_DISCOVERY_EVENTS", "1000"))
WINDOW = 110
BURST = 100
BURSTS = int(os.environ.get("BENCH_DISCOVERY_BURSTS", "10"))
NODE = "node-a"


def make_pod(name: str, *, port: int = 8080) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "bench", "labels": {"app": name}},
            "spec": {"nodeName": NODE, "containers": [
                {"name": "app", "image": "docker.io/local/busybox",
                 "ports": [{"containerPort": port, "name": "http"}],
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": port}}}]}}


def start_server(base: Path, *, pods: int = 0) -> KubeAPIServer:
    server = KubeAPIServer(base, nodes=(NODE,), bookmark_interval=1.0).start()
    server.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
    for i in range(pods):
        server.store.create(make_pod(f"pre-{i}"))
    return server


class AgentProc:
    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    def stop(self) -> None:
        coral_procs.stop_process(self.proc)


def start_colony(base: Path, server: KubeAPIServer) -> coral_procs.Colony:
    """A colony that checks node agents' service account tokens on `server`."""
    kubeconfig = kube_identity.colony_kubeconfig(server, base / "colony-kubeconfig")
    return coral_procs.Colony(base / "colony",
                              args=("--token-review-kubeconfig", kubeconfig)).start()


def agent_config(base: Path, server: KubeAPIServer, colony: coral_procs.Colony) -> str:
    """The node agent's config: its pod-bound token makes it node-<NODE> on the colony."""
    token = kube_identity.node_agent_token(server, NODE, base / "agent.token")
    return (f"agent: {{id: node-{NODE}, runtime: daemonset}}\n"
            f"colony: {{address: '{colony.address}', caFile: '{colony.data_dir / 'ca.crt'}', "
            f"id: '{colony.colony_id}', serviceAccountTokenFile: '{token}'}}\n")


def start_world(base: Path, *, pods: int = 0):
    """(API server fixture, colony process, node agent process) with `pods` pods on NODE."""
    server = start_server(base / "kubeapi", pods=pods)
    colony = start_colony(base, server)
    cfg = base / "agent.yaml"
    cfg.write_text(agent_config(base, server, colony))
    log = open(base / "agent.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "coral_lib.commands.agent_node", "--config", str(cfg),
         "--kubeconfig", server.kubeconfig_path, "--node-name", NODE,
         "--cri-socket", "", "--state-dir", str(base / "state")],
        stdout=log, stderr=log, cwd=str(ROOT))
    log.close()
    return server, colony, AgentProc(proc)


def _wait_named(client, name: str, *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.list_services(name=name):
            return
        time.sleep(0.001)
    raise TimeoutError(f"pod {name} never reached the registry")


def event_latency(server, colony) -> list[float]:
    samples = []
    coral_procs.wait_registered(colony, [f"node-{NODE}"])
    with colony.client() as c:
        for i in range(EVENTS):
            name = f"ev-{i}"
            start = time.perf_counter()
            server.store.create(make_pod(name))
            _wait_named(c, name)
            samples.append(time.perf_counter() - start)
            if i >= WINDOW - 1:
                server.store.delete("pods", f"ev-{i - WINDOW + 1}", namespace="bench")
    return samples


def _wait_count(client, count: int, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(client.list_services(namespace="bench")) != count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"registry never held {count} bench services")
        time.sleep(0.01)


def burst_latency(server, colony) -> tuple[list[float], list[float]]:
    """Per-pod creation -> listed seconds over BURSTS bursts, and each burst's whole time."""
    samples, wholes = [], []
    with colony.client() as c:
        for name in [p["metadata"]["name"] for p in server.store.list("pods", namespace="bench")]:
            server.store.delete("pods", name, namespace="bench")
        _wait_count(c, 0)
        for b in range(BURSTS):
            names = [f"burst-{b}-{i}" for i in range(BURST)]
            created: dict[str, float] = {}
            for name in names:
                server.store.create(make_pod(name))
                created[name] = time.perf_counter()
            seen: dict[str, float] = {}
            deadline = time.monotonic() + 60
            while len(seen) < BURST:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"burst {b}: {BURST - len(seen)} pods never listed")
                listed = {s["pod_name"] for s in c.list_services(namespace="bench")}
                now = time.perf_counter()
                for name in listed.intersection(names).difference(seen):
                    seen[name] = now
            samples.extend(seen[n] - created[n] for n in names)
            wholes.append(max(seen.values()) - min(created.values()))
            for name in names:
                server.store.delete("pods", name, namespace="bench")
            _wait_count(c, 0)
    return samples, wholes


def relist_cpu(server) -> dict:
    for i in range(WINDOW):
        server.store.create(make_pod(f"relist-{i}"))
    watcher = kubernetes.PodWatcher(kubernetes.api_from(kubeconfig=server.kubeconfig_path),
                                    node_name=NODE)
    filters = config.KubernetesDiscovery()
    list_ms, build_ms = [], []
    for _ in range(20):
        t0 = time.thread_time()
        watcher._list()
        t1 = time.thread_time()
        pods, labels = watcher.snapshot()
        notes = {f"bench/{p['metadata']['name']}": {} for p in pods}
        final = node.final_services(node.discovered(pods, node_labels=labels, filters=filters),
                                    annotations=notes, rules=(), explicit=(), node_name=NODE)
        t2 = time.thread_time()
        list_ms.append((t1 - t0) * 1000)
        build_ms.append((t2 - t1) * 1000)
    assert len(final) == WINDOW, len(final)
    return {"relist_pods": len(pods), "relist_cpu_ms": round(statistics.median(list_ms), 2),
            "service_set_cpu_ms": round(statistics.median(build_ms), 2)}


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-discovery-") as tmp:
        server, colony, agent = start_world(Path(tmp))
        try:
            samples = event_latency(server, colony)
            bursts, wholes = burst_latency(server, colony)
        finally:
            agent.stop()
            colony.stop()
            server.stop()
        quiet = start_server(Path(tmp) / "kubeapi-relist")
        try:
            figures = relist_cpu(quiet)
        finally:
            quiet.stop()
    return {**common.summary_ms("event", samples), **common.summary_ms("burst", bursts),
            "burst_size": BURST, "bursts": len(wholes),
            "burst_whole_median_ms": round(statistics.median(wholes) * 1000, 1),
            "burst_whole_max_ms": round(max(wholes) * 1000, 1),
            "p99_target_ms": 500, **figures}


def main() -> None:
    figures = run()
    for key, value in figures.items():
        print(f"{key}: {value}")
    ok = figures.get("event_p99_ms", figures["event_max_ms"]) < figures["p99_target_ms"]
    print("p99 target met" if ok else "p99 target NOT met")


if __name__ == "__main__":
    main()
