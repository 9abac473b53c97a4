"""Memory of the DaemonSet and sidecar agents measured in their containers (issue 14 §4.4).

The project's image (tests/support/image.py, built or reused from its cache) runs as the
rendered DaemonSet on two fixture nodes (tests/support/kubecluster.py: private containerd,
pod runner, live controllers, a real colony reviewing the agents' projected tokens). Once
both agents are registered and have discovered the app pods, and the webhook (from the
same image) has injected a sidecar into one app pod whose agent registered, each agent
container's cgroup
memory is read (`memory.current` where the memory controller is cgroup v2; this machine
mounts it as v1, so `memory.usage_in_bytes` and memory.stat's `total_rss`) together with
the RSS of the agent process (psutil, from the host: hostPID gives no extra view here).
Needs root, containerd, runc and the image build tools; skipped otherwise.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile
import time

import psutil

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.support import containerd, coral_procs, image  # noqa: E402
from tests.support.kubecluster import NODES, SYSTEM, KubeCluster  # noqa: E402

MB = 1 << 20
APP_PODS = 10


def run() -> dict:
    reason = image.why_not()
    if reason:
        return {"skipped": reason}
    agent_image = image.build()
    with tempfile.TemporaryDirectory(prefix="bench-pod-mem-") as tmp, \
            KubeCluster(tmp, image=agent_image) as kube:
        colony = kube.start_colony()
        kube.deploy_daemonset(colony)
        kube.server.store.create({"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": "shop"}})
        for i in range(APP_PODS):
            kube.server.store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": f"app-{i}", "namespace": "shop"}, "spec": {
                "nodeName": NODES[i % len(NODES)], "containers": [{
                    "name": "app", "image": "docker.io/local/busybox:latest",
                    "ports": [{"containerPort": 8080}], "command": ["sleep", "100000"]}]}})
        coral_procs.wait_registered(colony, [f"node-{n}" for n in NODES], timeout=120)

        def discovered() -> int:
            with colony.client() as c:
                return len({s["pod_name"] for s in c.list_services(namespace="shop")})
        coral_procs.wait_for(lambda: discovered() == APP_PODS, timeout=120,
                             what="app pods discovered")
        time.sleep(5)  # let start-up garbage settle before reading
        figures: dict = {"nodes": len(NODES), "app_pods": APP_PODS}
        for node, pod in sorted(kube.agent_pods().items()):
            name = pod["metadata"]["name"]
            cid = kube.container_id(SYSTEM, name, "coral-agent")
            for key, value in _cgroup_memory_by_id(kube, SYSTEM, name, cid).items():
                figures[f"daemonset_agent_{node}_{key}"] = value
        figures.update(_sidecar(kube, colony))
        return figures


def _sidecar(kube: KubeCluster, colony) -> dict:
    server = kube.server
    kube.deploy_webhook()
    coral_procs.wait_for(lambda: server.store.get("deployments", "coral-webhook",
                                                  namespace=SYSTEM)
                         .get("status", {}).get("availableReplicas") == 1, timeout=120,
                         what="webhook available")
    server.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "shop2", "labels": {"coral.io/inject": "true",
                                    "kubernetes.io/metadata.name": "shop2"}}})
    kube.colony_config_map(colony, "shop2")
    pod = server.store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "app", "namespace": "shop2"}, "spec": {
        "nodeName": NODES[0], "hostNetwork": True, "containers": [{
            "name": "app", "image": "docker.io/local/busybox:latest",
            "command": ["sleep", "100000"]}]}})
    (sidecar,) = pod["spec"]["initContainers"]

    def registered() -> bool:
        with colony.client() as c:
            return any(a["agent_id"].startswith("pod-shop2.app") and a.get("connected")
                       for a in c.list_agents())
    coral_procs.wait_for(registered, timeout=120, what="sidecar agent registered")
    time.sleep(5)
    status = server.store.get("pods", "app", namespace="shop2")["status"]
    sidecar_id = status["initContainerStatuses"][0]["containerID"].split("://", 1)[1]
    out = {}
    for key, value in _cgroup_memory_by_id(kube, "shop2", "app", sidecar_id).items():
        out[f"sidecar_agent_{key}"] = value
    out["sidecar_container"] = sidecar["name"]
    return out


def _cgroup_memory_by_id(kube: KubeCluster, namespace: str, pod: str, cid: str) -> dict:
    """The container's cgroup memory (v2 memory.current where the memory controller is v2,
    else v1 usage and rss) and its processes' RSS."""
    uid = kube.server.store.get("pods", pod, namespace=namespace)["metadata"]["uid"]
    out: dict = {}
    for mount in containerd.cgroup_mounts():
        base = pathlib.Path(mount, f"kubepods/besteffort/pod{uid}/{cid}")
        if (base / "memory.current").exists():
            out["cgroup_memory_current_mb"] = round(int((base / "memory.current").read_text())
                                                    / MB, 1)
        if pathlib.Path(mount).name == "memory" and base.is_dir():
            out["cgroup_v1_usage_mb"] = round(
                int((base / "memory.usage_in_bytes").read_text()) / MB, 1)
            stat = dict(line.split() for line in (base / "memory.stat").read_text().splitlines())
            out["cgroup_v1_rss_mb"] = round(int(stat.get("total_rss", stat.get("rss", 0))) / MB,
                                            1)
            pids = [int(p) for p in (base / "cgroup.procs").read_text().split()]
            out["process_rss_mb"] = round(sum(psutil.Process(p).memory_info().rss
                                              for p in pids) / MB, 1)
    return out


def main() -> None:
    for key, value in run().items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
