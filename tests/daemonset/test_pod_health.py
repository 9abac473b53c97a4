"""Issue 16, "Service health" for a DaemonSet agent: a pod's service, with its health
endpoint and interval from the pod's annotations (coral.io/health-endpoint,
coral.io/health-interval), is probed by the agent with `--mode active` in the network
namespace of the pod's container (found as an exec target is: CRI, then /proc/<pid>/ns/net)
and its health reaches the registry. Real containerd, the API server fixture, real colony
and `coral agent node` processes. The shortcut: this containerd runs pods in the node's
network namespace (no CNI), so the namespace entered is the host's; entering a pod's own
namespace is tested with the sidecar agent (tests/health)."""

from __future__ import annotations

import json

import pytest

from tests.daemonset.conftest import pod
from tests.daemonset.test_cri_exec import runtime  # noqa: F401
from tests.support import containerd, coral_procs
from tests.support.coral_procs import wait_for


@pytest.fixture
def health_pod(kubeapi, runtime):  # noqa: F811
    port = coral_procs.free_port()
    created = kubeapi.store.create(pod("web", annotations={
        "coral.io/health-endpoint": "/healthz", "coral.io/health-interval": "1s"},
        containers=[{"name": "app", "image": containerd.BUSYBOX_IMAGE,
                     "ports": [{"containerPort": port}]}]))
    uid = created["metadata"]["uid"]
    handle = runtime.run_pod("web", "shop", uid, cgroup_parent=f"/kubepods/besteffort/pod{uid}",
                             containers=[{"name": "app", "argv": [
                                 "sh", "-c", "mkdir -p /www && echo ok > /www/healthz && "
                                 f"exec httpd -f -p {port} -h /www"]}])
    kubeapi.store.patch("pods", "web", {"status": {"phase": "Running", "containerStatuses": [
        {"name": "app", "ready": True, "containerID": f"containerd://{handle.containers['app']}"}
    ]}}, namespace="shop", subresource="status")
    yield handle
    runtime.remove_pod(handle)


def _health(colony) -> dict:
    with colony.client() as c:
        rows = c.list_services(name="web")
    return rows[0]["health"] if rows else {}


def test_daemonset_agent_probes_a_pods_health_endpoint_from_its_annotations(
        kubeapi, colony, node_agents, runtime, health_pod):  # noqa: F811
    node_agents("node-a", flags=["--cri-socket", runtime.socket, "--mode", "active"])
    wait_for(lambda: _health(colony).get("state") == "healthy", timeout=40,
             what="web probed healthy")
    run = coral_procs.coral("exec", "-o", "json", "--pod", "web", "-n", "shop", "--", "rm",
                            "/www/healthz", env=colony.operator_env)
    assert json.loads(run.stdout)["results"][0]["rc"] == 0, run.stderr
    wait_for(lambda: _health(colony).get("state") == "unhealthy", timeout=20,
             what="web unhealthy")
    assert _health(colony)["last_error"] == "GET /healthz: HTTP 404"
