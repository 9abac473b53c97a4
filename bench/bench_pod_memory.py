"""Memory of the DaemonSet agent measured in its container (issue 14 §4.4).

The project's image (tests/support/image.py, built or reused from its cache) runs as the
rendered DaemonSet on two fixture nodes (tests/support/kubecluster.py: private containerd,
pod runner, live controllers, a real colony reviewing the agents' projected tokens). Once
both agents are registered and have discovered the app pods, the agent container's cgroup
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

from tests.support import coral_procs, image  # noqa: E402
from tests.support.kubecluster import NODES, SYSTEM, KubeCluster  # noqa: E402

MB = 1 << 20
APP_PODS = 10


def _cgroup_memory(kube: KubeCluster, pod: str) -> dict:
    out: dict = {}
    try:
        unified = kube.cgroup_dir(SYSTEM, pod, "coral-agent", "")
        current = unified / "memory.current"
        if current.exists():
            out["cgroup_memory_current_mb"] = round(int(current.read_text()) / MB, 1)
    except LookupError:
        pass
    try:
        v1 = kube.cgroup_dir(SYSTEM, pod, "coral-agent", "memory")
        out["cgroup_v1_usage_mb"] = round(int((v1 / "memory.usage_in_bytes").read_text()) / MB,
                                          1)
        stat = dict(line.split() for line in (v1 / "memory.stat").read_text().splitlines())
        out["cgroup_v1_rss_mb"] = round(int(stat.get("total_rss", stat.get("rss", 0))) / MB, 1)
        pids = [int(p) for p in (v1 / "cgroup.procs").read_text().split()]
        out["process_rss_mb"] = round(sum(psutil.Process(p).memory_info().rss
                                          for p in pids) / MB, 1)
    except LookupError:
        pass
    return out


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
            for key, value in _cgroup_memory(kube, pod["metadata"]["name"]).items():
                figures[f"daemonset_agent_{node}_{key}"] = value
        return figures


def main() -> None:
    for key, value in run().items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
