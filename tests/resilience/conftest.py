"""Fixtures for the resilience suite (`make resilience`): real colony, agents, API server
fixture and small real mounts (tmpfs, read-only bind) for the data-directory failures.

The kubeapi / node_agents fixtures and colony_args (TokenReview on the API server fixture,
for the root `colony`) are the DaemonSet suite's, reused as they are.

COMPONENT TEST, NOT AN E2E (issue 14): DaemonSet agents here are plain `coral agent node`
processes (named shortcut, see tests/daemonset/conftest.py), so they can be SIGKILLed and
restarted hundreds of times mid-churn; killing the agent container of an image-run
DaemonSet pod is tested in tests/kube_e2e/test_daemonset.py.
"""

from __future__ import annotations

import contextlib
import pathlib
import subprocess
from collections.abc import Iterator

import pytest

from tests.daemonset.conftest import colony_args, kubeapi, node_agents  # noqa: F401 - fixtures
from tests.support import coral_procs


@contextlib.contextmanager
def mounted(args: list[str], target: pathlib.Path) -> Iterator[pathlib.Path]:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *args, str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def why_no_mounts() -> str:
    probe = subprocess.run(["mount", "--version"], capture_output=True)
    if probe.returncode != 0:
        return "mount(8) is not available"
    import os
    return "" if os.geteuid() == 0 else "mounting a tmpfs / read-only bind needs root"


@pytest.fixture
def tmpfs_factory(tmp_path: pathlib.Path):
    """tmpfs_factory(size) -> a fresh tmpfs of that size (e.g. "2m"), unmounted at the end."""
    reason = why_no_mounts()
    if reason:
        pytest.skip(reason)
    stack = contextlib.ExitStack()

    def make(size: str, name: str = "small") -> pathlib.Path:
        return stack.enter_context(mounted(["-t", "tmpfs", "-o", f"size={size}",
                                            f"coral-resilience-{name}"], tmp_path / name))

    with stack:
        yield make


def read_only_bind(source: pathlib.Path, view: pathlib.Path) -> contextlib.AbstractContextManager:
    """A read-only bind mount of source at view: root cannot write through it."""
    @contextlib.contextmanager
    def ctx():
        with mounted(["--bind", str(source)], view):
            subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
            yield view
    return ctx()


def registry_keys(the_colony: coral_procs.Colony) -> list[tuple]:
    """Every stored service as (agent, name, port, namespace, pod), duplicates kept."""
    with the_colony.client() as c:
        return [(s["agent"], s["component_name"], s["port"], s.get("namespace", ""),
                 s.get("pod_name", "")) for s in c.list_services()]


# ---- pod churn against the API server fixture, and the truth it leaves behind ------------

def churn_step(server, i: int, *, nodes: tuple[str, ...], rng) -> None:
    """Step i of a churn: create pod i; now and then relabel or delete an earlier pod."""
    from tests.daemonset.conftest import pod
    server.store.create(pod(f"churn-{i:04d}", node=nodes[i % len(nodes)],
                             labels={"app": f"svc-{i % 40}"}, port=8000 + i % 5))
    if i >= 10 and rng.random() < 0.3:
        victim = f"churn-{rng.randrange(0, i):04d}"
        try:
            if rng.random() < 0.5:
                server.store.delete("pods", victim, namespace="shop")
            else:
                server.store.patch("pods", victim, {"metadata": {"labels": {
                    "app": f"renamed-{rng.randrange(40)}"}}}, namespace="shop")
        except Exception as exc:  # already deleted: the store says 404, that is fine
            if "not found" not in str(exc).lower() and "404" not in str(exc):
                raise


def truth(server) -> set[tuple]:
    """(agent, pod, component, port) for every pod the API server holds now."""
    return {(f"node-{p['spec']['nodeName']}", p["metadata"]["name"], p["metadata"]["labels"]["app"],
             p["spec"]["containers"][0]["ports"][0]["containerPort"])
            for p in server.store.list("pods", namespace="shop")}


def registry_pods(the_colony: coral_procs.Colony) -> list[tuple]:
    """(agent, pod, component, port) for every stored service, duplicates kept."""
    with the_colony.client() as c:
        return [(s["agent"], s.get("pod_name", ""), s["component_name"], s.get("port", 0))
                for s in c.list_services(namespace="shop")]


def explain_difference(expected: set, actual: list) -> str:
    seen = set(actual)
    dups = sorted({k for k in actual if actual.count(k) > 1})[:5]
    return (f"missing {sorted(expected - seen)[:5]} ghosts {sorted(seen - expected)[:5]} "
            f"duplicates {dups} ({len(expected)} expected, {len(actual)} stored)")
