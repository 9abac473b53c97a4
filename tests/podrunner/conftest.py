"""One private containerd (with pod networking), one API fixture with two nodes and a pod
runner on each, shared by the folder: pods created through the API run as real containers."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.cri.conftest import why_not_runnable
from tests.support import containerd, podrunner, tools
from tests.support.kubeapi import KubeAPIServer, workloads

NODES = ("node-a", "node-b")
BUSYBOX = containerd.BUSYBOX_IMAGE


@pytest.fixture(scope="session")
def runtime(tmp_path_factory):
    reason = why_not_runnable()
    if reason:
        pytest.skip(f"containerd cannot run here: {reason}")
    with containerd.Containerd(tmp_path_factory.mktemp("runner-cri"), cni=True) as node:
        yield node


@pytest.fixture(scope="session")
def cluster(tmp_path_factory, runtime):
    root = tmp_path_factory.mktemp("runner-api")
    with KubeAPIServer(root, nodes=list(NODES)) as server:
        server.store.service_accounts = True  # pods get kube-api-access, as in a cluster
        runners = [podrunner.PodRunner(server, runtime, n, root) for n in NODES]
        for r in runners:
            r.start()
        server.runners = {r.node: r for r in runners}
        server.workloads = workloads.Workloads(server)
        server.workloads.start()
        try:
            yield server
        finally:
            server.workloads.stop()
            for r in runners:
                r.stop()


_seq = iter(range(1, 10**6))


@pytest.fixture
def ns(cluster):
    """A fresh namespace per test (deleting it deletes its pods: the runners stop them)."""
    name = f"t{next(_seq)}"
    cluster.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    cluster.store.delete("namespaces", name)


def wait_for(fn, *, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def pod_status(server, ns: str, name: str) -> dict:
    return server.store.get("pods", name, namespace=ns).get("status") or {}


def container_state(server, ns: str, name: str, container: str, *, init: bool = False) -> dict:
    key = "initContainerStatuses" if init else "containerStatuses"
    for c in pod_status(server, ns, name).get(key) or []:
        if c["name"] == container:
            return c
    return {}


def is_ready(server, ns: str, name: str) -> bool:
    conds = pod_status(server, ns, name).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def kubectl(server, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([tools.kubectl(), "--kubeconfig", server.kubeconfig_path, *args],
                          capture_output=True, text=True, timeout=timeout)


def pod(name: str, containers: list[dict], *, node: str = "node-a", **spec) -> dict:
    for c in containers:
        c.setdefault("image", BUSYBOX)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": containers, **spec}}


def exec_in(server, ns: str, name: str, container: str, argv: list[str]) -> tuple[int, str]:
    """ExecSync into the running container, as `kubectl exec` reaches it through kubelet."""
    from coral_lib._proto.cri.runtime.v1 import api_pb2
    status = container_state(server, ns, name, container) or container_state(
        server, ns, name, container, init=True)
    cid = status["containerID"].split("://", 1)[1]
    runtime = next(iter(server.runners.values())).containerd.runtime
    reply = runtime.ExecSync(api_pb2.ExecSyncRequest(container_id=cid, cmd=argv, timeout=10),
                             timeout=20)
    return reply.exit_code, (reply.stdout + reply.stderr).decode()
