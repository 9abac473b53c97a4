"""Admission latency and throughput of `coral webhook serve` over HTTPS on loopback.

The server runs as its own process (the real CLI) and reads namespace labels the way it
does in production: from the API server (here the in-repo fixture tests/support/kubeapi,
with the namespaces labelled for injection), through its TTL cache. Clients use keep-alive
connections like the API server does. The pod set is the golden test inputs
(tests/webhook/testdata).

1. Under load (the p99 that matters): an open loop offers each of LOAD_RATES requests/s
   (a busy cluster's pod creations; the throughput target) spread over LOAD_CONNECTIONS
   connections (one client process each) for LOAD_SECONDS; each request's
   latency is counted from the moment it was due, so a stalled server is not hidden by
   clients waiting for it (no coordinated omission).
2. Saturated throughput: closed-loop clients send as fast as answers come.
3. Idle latency: one connection, one request at a time.

Targets (issue 5): p99 < 5 ms and >= 1,000 requests/s on 2 cores.

    .venv/bin/python -m bench --only webhook
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import pathlib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from tests.support.kubeapi import KubeAPIServer  # noqa: E402

TESTDATA = ROOT / "tests" / "webhook" / "testdata"
LOAD_RATES = (100, 1000)  # requests/s offered: a busy cluster's pod creations; the target
LOAD_CONNECTIONS = 4
LOAD_SECONDS = 10.0
INJECTED_NAMESPACES = ("shop", "default")


def review_bodies() -> list[bytes]:
    bodies = []
    for path in sorted(TESTDATA.glob("*.yaml")):
        if path.name.endswith(".injected.yaml"):
            continue
        pod = next(yaml.safe_load_all(path.read_text()))
        namespace = (pod.get("metadata") or {}).get("namespace") or "shop"
        review = {
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": f"bench-{path.stem}", "namespace": namespace,
                        "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "operation": "CREATE", "object": pod},
        }
        bodies.append(json.dumps(review).encode())
    return bodies


def _connection(port: int, ca_file: str) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=ca_file)
    return http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)


def _post(conn: http.client.HTTPSConnection, body: bytes) -> bool:
    """POST one review; whether the answer carries a patch (the pod was injected)."""
    conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    text = response.read()
    if response.status != 200:
        raise RuntimeError(f"webhook answered {response.status}")
    return b'"patch"' in text


def _client(port: int, ca_file: str, bodies: list[bytes], deadline: float, queue) -> None:
    conn, count, i = _connection(port, ca_file), 0, 0
    while time.monotonic() < deadline:
        _post(conn, bodies[i % len(bodies)])
        count, i = count + 1, i + 1
    conn.close()
    queue.put(count)


def _open_loop(port: int, ca_file: str, bodies: list[bytes], rate: float, start: float,
               seconds: float, offset: int, queue) -> None:
    """Send at `rate`/s from `start` for `seconds`; latency from each request's due time."""
    conn, samples, i = _connection(port, ca_file), [], 0
    _post(conn, bodies[offset % len(bodies)])  # connect + TLS handshake before the clock
    interval = 1.0 / rate
    while True:
        due = start + i * interval
        if due >= start + seconds:
            break
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        _post(conn, bodies[(offset + i) % len(bodies)])
        samples.append(time.perf_counter() - due)
        i += 1
    conn.close()
    queue.put(samples)


def load(port: int, ca_file: str, bodies: list[bytes], *, rate: float, connections: int,
         seconds: float) -> dict:
    queue = multiprocessing.Queue()
    start = time.perf_counter() + 1.0  # every client connected before the first is due
    workers = [multiprocessing.Process(target=_open_loop, args=(
        port, ca_file, bodies, rate / connections, start + k / rate, seconds, k, queue))
        for k in range(connections)]
    for w in workers:
        w.start()
    samples = [s for _ in workers for s in queue.get(timeout=seconds + 60)]
    for w in workers:
        w.join()
    name = f"load{rate}"
    return {f"{name}_connections": connections, f"{name}_seconds": seconds,
            f"{name}_achieved_per_s": round(len(samples) / seconds, 1),
            **common.summary_ms(name, samples)}


def namespace_server(folder: pathlib.Path) -> KubeAPIServer:
    """The API server the webhook reads namespace labels from, as in a cluster."""
    server = KubeAPIServer(folder / "kubeapi").start()
    existing = {ns["metadata"]["name"] for ns in server.store.list("namespaces")}
    for name in INJECTED_NAMESPACES:
        labels = {"metadata": {"labels": {"coral.io/inject": "true"}}}
        if name in existing:
            server.store.patch("namespaces", name, labels)
        else:
            server.store.create({"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": name, **labels["metadata"]}})
    return server


def _start_server(folder: pathlib.Path, kubeconfig: str) -> tuple[subprocess.Popen, int]:
    subprocess.run([sys.executable, "-m", "coral_lib.cli", "webhook", "certs", "--ip",
                    "127.0.0.1", "--out", str(folder)], check=True, capture_output=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "coral_lib.cli", "webhook", "serve", "--listen",
         f"127.0.0.1:{port}", "--cert", str(folder / "tls.crt"), "--key",
         str(folder / "tls.key"), "--kubeconfig", kubeconfig],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("webhook did not start")


def run(*, quick: bool = False, duration: float = 5.0, connections: int = 4,
        latency_requests: int = 3000) -> dict:
    bodies = review_bodies()
    load_seconds = 2.0 if quick else LOAD_SECONDS
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        api = namespace_server(folder)
        proc = None
        try:
            proc, port = _start_server(folder, api.kubeconfig_path)
            ca_file = str(folder / "ca.crt")
            conn = _connection(port, ca_file)
            # Warm-up: the namespace label cache fills from the API server here; a pod is
            # only injected when its namespace's labels were read.
            injected = sum(_post(conn, body) for body in bodies)
            if not injected:
                raise RuntimeError("no pod was injected: namespace labels were not read")
            figures = {}
            for rate in LOAD_RATES:
                figures.update(load(port, ca_file, bodies, rate=rate,
                                    connections=LOAD_CONNECTIONS, seconds=load_seconds))
            samples = []
            for i in range(latency_requests):
                started = time.perf_counter()
                _post(conn, bodies[i % len(bodies)])
                samples.append(time.perf_counter() - started)
            conn.close()
            queue = multiprocessing.Queue()
            deadline = time.monotonic() + duration
            workers = [multiprocessing.Process(target=_client, args=(port, ca_file, bodies,
                                                                     deadline, queue))
                       for _ in range(connections)]
            started = time.monotonic()
            for w in workers:
                w.start()
            total = sum(queue.get(timeout=duration + 30) for _ in workers)
            elapsed = time.monotonic() - started
            for w in workers:
                w.join()
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)
            api.stop()
    return {**figures, **common.summary_ms("idle", samples),
            "webhook_requests_per_second": round(total / elapsed, 1),
            "webhook_connections": connections, "webhook_pod_specs": len(bodies),
            "namespace_labels_from": "API server (tests/support/kubeapi), the webhook's TTL "
                                     "cache in front", "injected_in_warmup": injected,
            "cpus": os.cpu_count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    figures = run(duration=args.duration, connections=args.connections)
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
