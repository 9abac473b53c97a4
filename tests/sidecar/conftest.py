"""Fixtures: real pods from the pod harness (namespaces + containerd-style cgroups).

COMPONENT TEST, NOT AN E2E (issue 14): the sidecar's discovery and exec backends run from
this checkout in a probe process placed in the pod's namespaces by the harness (named
shortcut), with root's capabilities. The sidecar from the image with exactly the injected
capability set is tests/image/test_sidecar_least_privilege.py and
tests/kube_e2e/test_webhook.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support import podharness

PROBE = os.path.join(os.path.dirname(__file__), "in_pod_probe.py")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The shop pod: a listener held by a child (web), a listener held by the first process
# (cache, named by the container name), a container without ports or name env (worker).
SHOP = {
    "web": dict(argv=["sh", "-c", "busybox httpd -f -p 8080 & wait"], port=8080,
                env={"OTEL_SERVICE_NAME": "checkout"}),
    "cache": dict(argv=["python3", "-m", "http.server", "9090", "--bind", "127.0.0.1"],
                  port=9090, env={"SERVICE_NAME": ""}),
    "worker": dict(argv=["sleep", "100000"], name_env=False),
}


def why_not_runnable() -> str:
    missing = [b for b in ("unshare", "nsenter", "setsid", "setpriv", "busybox", "ip")
               if shutil.which(b) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install -y util-linux busybox iproute2)"
    if os.geteuid() != 0:
        return "the pod harness needs root (namespaces, mounts, cgroups)"
    return ""


def _require() -> None:
    reason = why_not_runnable()
    if reason:
        pytest.fail(f"pod harness cannot run here: {reason}")


def start_shop(pod: podharness.Pod) -> podharness.Pod:
    for name, spec in SHOP.items():
        pod.add_container(name, **spec)
    return pod


@pytest.fixture(scope="module")
def shop_pod():
    """A pod with three app containers, shared by the read-only tests of a module."""
    _require()
    with podharness.Pod("shop-7d9f", "shop") as pod:
        yield start_shop(pod)


@pytest.fixture
def pod():
    """A fresh empty pod for tests that start and stop containers."""
    _require()
    with podharness.Pod("scratch-1", "lab") as fresh:
        yield fresh


def run_probe(pod: podharness.Pod, *args: str, env: dict | None = None,
              timeout: float = 30) -> dict:
    """Run in_pod_probe.py as a sidecar container "coral-agent" of pod and return its JSON
    answer, plus the probe's container id under "_agent_container_id"."""
    proc = pod.run_in_pod(
        [sys.executable, PROBE, *args], name="coral-agent",
        env={"PYTHONPATH": REPO, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    agent_id = pod.containers["coral-agent"].container_id
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        pod.stop_container("coral-agent")
    assert proc.returncode == 0, err.decode()
    return {**json.loads(out), "_agent_container_id": agent_id}
