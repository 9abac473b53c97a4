"""Fixtures for the resilience suite (`make resilience`): real colony, agents, API server
fixture and small real mounts (tmpfs, read-only bind) for the data-directory failures.

The colony / kubeapi / node_agents fixtures are the DaemonSet suite's, reused as they are.
"""

from __future__ import annotations

import contextlib
import pathlib
import subprocess
from collections.abc import Iterator

import pytest

from tests.daemonset.conftest import colony, kubeapi, node_agents  # noqa: F401 - fixtures
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
