"""Admission latency and throughput of `coral webhook serve` over HTTPS on loopback.

The server runs as its own process (the real CLI); clients use keep-alive connections
like the API server does. The pod set is the golden test inputs (tests/webhook/testdata),
sent with their namespaces labelled for injection. Targets (issue 5): p99 < 5 ms and
>= 1,000 requests/s on 2 cores.

    .venv/bin/python bench/bench_webhook.py [--duration 5] [--connections 4]
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
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTDATA = ROOT / "tests" / "webhook" / "testdata"


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


def _post(conn: http.client.HTTPSConnection, body: bytes) -> None:
    conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"webhook answered {response.status}")


def _client(port: int, ca_file: str, bodies: list[bytes], deadline: float, queue) -> None:
    conn, count, i = _connection(port, ca_file), 0, 0
    while time.monotonic() < deadline:
        _post(conn, bodies[i % len(bodies)])
        count, i = count + 1, i + 1
    conn.close()
    queue.put(count)


def _start_server(folder: pathlib.Path) -> tuple[subprocess.Popen, int]:
    subprocess.run([sys.executable, "-m", "coral_lib.cli", "webhook", "certs", "--ip",
                    "127.0.0.1", "--out", str(folder)], check=True, capture_output=True)
    labels = {ns: {"coral.io/inject": "true"} for ns in ("shop", "default")}
    (folder / "labels.json").write_text(json.dumps(labels))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "coral_lib.cli", "webhook", "serve", "--listen",
         f"127.0.0.1:{port}", "--cert", str(folder / "tls.crt"), "--key",
         str(folder / "tls.key"), "--namespace-labels", str(folder / "labels.json")],
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


def run(*, duration: float = 5.0, connections: int = 4, latency_requests: int = 3000) -> dict:
    bodies = review_bodies()
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        proc, port = _start_server(folder)
        ca_file = str(folder / "ca.crt")
        try:
            conn = _connection(port, ca_file)
            for body in bodies:  # warm-up
                _post(conn, body)
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
            proc.terminate()
            proc.wait(timeout=10)
    samples.sort()
    return {
        "webhook_latency_median_ms": round(statistics.median(samples) * 1000, 3),
        "webhook_latency_p99_ms": round(samples[int(len(samples) * 0.99) - 1] * 1000, 3),
        "webhook_requests_per_second": round(total / elapsed, 1),
        "webhook_connections": connections,
        "webhook_pod_specs": len(bodies),
        "cpus": os.cpu_count(),
    }


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
