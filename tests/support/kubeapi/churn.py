"""Churn driver: create, relabel and delete pods on given nodes at a given rate, through
the store (no HTTP), so watchers see realistic event streams fast.

    result = churn(server, pods=1000, nodes=["n1", "n2", "n3"], rate=2000, relabel=True,
                   delete=True, namespaces=["default"], seed=7)
    result.expected  # {(namespace, name): pod dict} still present at the end
"""

from __future__ import annotations

import dataclasses
import random
import time

_SERVICES = ["api", "web", "worker", "cache", "db"]


@dataclasses.dataclass
class ChurnResult:
    created: int = 0
    relabelled: int = 0
    deleted: int = 0
    seconds: float = 0.0
    expected: dict = dataclasses.field(default_factory=dict)  # (ns, name) -> final pod


def make_pod(*, name: str, namespace: str, node: str, rng: random.Random) -> dict:
    app = rng.choice(_SERVICES)
    ports = [{"name": "http", "containerPort": 8000 + rng.randrange(100), "protocol": "TCP"}]
    if rng.random() < 0.3:
        ports.append({"name": "metrics", "containerPort": 9090, "protocol": "TCP"})
    containers = [{"name": app, "image": f"registry.local/{app}:1", "ports": ports,
                   "readinessProbe": {"httpGet": {"path": "/healthz", "port": ports[0][
                       "containerPort"]}}}]
    if rng.random() < 0.2:
        containers.append({"name": "sidecar", "image": "registry.local/proxy:1",
                           "ports": [{"name": "grpc", "containerPort": 15001}]})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app": app, "app.kubernetes.io/name": app,
                                    "generation": "0"}},
            "spec": {"nodeName": node, "containers": containers}}


def churn(server, *, pods: int, nodes: list[str], rate: float, relabel: bool, delete: bool,
          namespaces: list[str], seed: int) -> ChurnResult:
    """Create `pods` pods spread over nodes and namespaces; with `relabel`, relabel about
    half of them; with `delete`, delete about a third. `rate` is operations per second
    (0 = as fast as possible). Deterministic for a given seed."""
    store, rng, result = server.store, random.Random(seed), ChurnResult()
    for ns in namespaces:
        if not store.list("namespaces", field_selector=f"metadata.name={ns}"):
            store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    ops = _plan(pods=pods, relabel=relabel, delete=delete, rng=rng)
    start = time.monotonic()
    for i, (op, idx) in enumerate(ops):
        if rate > 0:
            pause = start + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        ns, name = namespaces[idx % len(namespaces)], f"churn-{idx:05d}"
        if op == "create":
            obj = make_pod(name=name, namespace=ns, node=nodes[idx % len(nodes)], rng=rng)
            result.expected[(ns, name)] = store.create(obj)
            result.created += 1
        elif op == "relabel":
            patch = {"metadata": {"labels": {"generation": str(rng.randrange(1, 1000)),
                                             "app": rng.choice(_SERVICES)}}}
            result.expected[(ns, name)] = store.patch("pods", name, patch, namespace=ns)
            result.relabelled += 1
        else:
            store.delete("pods", name, namespace=ns)
            result.expected.pop((ns, name), None)
            result.deleted += 1
    result.seconds = time.monotonic() - start
    return result


def _plan(*, pods: int, relabel: bool, delete: bool, rng: random.Random) -> list[tuple]:
    """Creates in order; relabels and deletes of already-created pods interleaved."""
    ops, alive = [], []
    relabels = set(rng.sample(range(pods), pods // 2)) if relabel else set()
    deletes = set(rng.sample(range(pods), pods // 3)) if delete else set()
    for idx in range(pods):
        ops.append(("create", idx))
        alive.append(idx)
        if rng.random() < 0.5 and len(alive) > 1:
            victim = rng.choice(alive[:-1])
            if victim in relabels:
                relabels.discard(victim)
                ops.append(("relabel", victim))
            elif victim in deletes:
                deletes.discard(victim)
                alive.remove(victim)
                ops.append(("delete", victim))
    ops += [("relabel", i) for i in sorted(relabels) if i in alive]
    ops += [("delete", i) for i in sorted(deletes) if i in alive]
    return ops
