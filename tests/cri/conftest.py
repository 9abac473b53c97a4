"""Fixtures: one private containerd for the folder, and pods created through CRI."""

from __future__ import annotations

import os
import shutil
import zlib

import pytest

from coral_lib.ops import cri
from tests.support import containerd


def why_not_runnable() -> str:
    missing = [b for b in ("containerd", "containerd-shim-runc-v2", "runc", "ctr")
               if shutil.which(b) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install -y containerd runc busybox-static)"
    if os.geteuid() != 0:
        return "containerd needs root"
    return ""


def sleep_seconds(name: str) -> int:
    """A per-container sleep length, so `ps` tells the containers' main processes apart."""
    return 100000 + zlib.crc32(name.encode()) % 100000


def marker_container(name: str, **extra) -> dict:
    """A container that writes its name to a file only its own mount namespace sees."""
    script = f"echo {name} > /tmp/marker; exec sleep {sleep_seconds(name)}"
    return {"name": name, "argv": ["sh", "-c", script], **extra}


@pytest.fixture(scope="session")
def node(tmp_path_factory):
    """A running private containerd; a start failure is an error with its log, not a skip."""
    reason = why_not_runnable()
    if reason:
        pytest.skip(f"containerd cannot run here: {reason}")
    with containerd.Containerd(tmp_path_factory.mktemp("cri")) as runtime:
        yield runtime


@pytest.fixture(scope="session")
def backend(node):
    with cri.CRIBackend(node.socket) as b:
        yield b


@pytest.fixture(scope="session")
def shop_pod(node):
    """Namespace "shop", pod "web": the Coral sidecar first (as a native sidecar starts),
    then two app containers; one shared PID namespace."""
    pod = node.run_pod(
        "web", "shop", "uid-web-1",
        containers=[marker_container("coral-agent"), marker_container("app", env={"ROLE": "a"}),
                    marker_container("worker")],
        share_pid=True, cgroup_parent="/coral-cri-test/poduid-web-1")
    yield pod
    node.remove_pod(pod)


@pytest.fixture(scope="session")
def annotated_pod(node):
    """A pod whose kubectl.kubernetes.io/default-container annotation names its 2nd container."""
    pod = node.run_pod(
        "api", "shop", "uid-api-1",
        containers=[marker_container("main"), marker_container("debug")],
        annotations={cri.DEFAULT_CONTAINER_ANNOTATION: "debug"})
    yield pod
    node.remove_pod(pod)


@pytest.fixture(scope="session")
def isolated_pod(node):
    """A pod without a shared PID namespace (share_pid=False)."""
    pod = node.run_pod("solo", "shop", "uid-solo-1",
                       containers=[marker_container("one"), marker_container("two")],
                       share_pid=False)
    yield pod
    node.remove_pod(pod)
