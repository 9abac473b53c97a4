"""Memory of the DaemonSet and sidecar agents measured in their containers (issue 14 §4.4;
issue 15, "A leaner agent": the goals are judged on these figures).

The project's image (tests/support/image.py, built or reused from its cache) runs as the
rendered DaemonSet on one of the two fixture nodes (tests/support/kubecluster.py: private
containerd, pod runner, live controllers, a real colony reviewing the agents' projected
tokens), with the issue's 110 app pods on that node (BENCH_POD_MEMORY_PODS; 10 with
--quick). Once the agent is registered and has discovered the app pods, and the webhook
(from the same image) has injected a sidecar into one more pod on that node whose agent
registered, each agent container is read.

One DaemonSet agent, not one per fixture node: the fixture's nodes share one kernel and
one containerd, so agents on both would share (and split the charge for) the same file
pages, which agents on real nodes never do. A sidecar on a real node does share them with
its node's DaemonSet agent, as it does here.

Each agent is read twice: idle once registered (`*_idle_cgroup_usage_mb`), and again after
real work through the colony (`*_cgroup_usage_mb` and the rest, the goal figures): the
DaemonSet agent runs WORK_ROUNDS fan-out execs over every app pod, the sidecar WORK_ROUNDS
execs in its app container. The agent gives back start-up's page cache and pages out its
library code once registered (coral_lib/pagecache.py); what an operation runs faults back
in and is charged again, so only the figure after work says what an agent in use costs.
After an exec or a heartbeat in which a fault read from disk, the agent drops what that
fault read ahead beyond the pages it mapped (pagecache.release_surplus); the pages it
mapped stay charged, and so stay in these figures.

The goal figure is the container's cgroup charge: `memory.current` where the memory
controller is cgroup v2, `memory.usage_in_bytes` where it is v1 (this machine): printed as
`*_cgroup_usage_mb`. Beside it, so that a skeptic can check it: the cgroup's anonymous
memory (`*_cgroup_anon_mb`: v1 total_rss, v2 anon) and page cache (`*_cgroup_file_mb`: v1
total_cache, v2 file) and, of that, file pages mapped by its processes
(`*_cgroup_file_mapped_mb`); the working set the kubelet evicts and reports by
(`*_cgroup_working_set_mb`: usage less inactive file pages); the agent processes' RSS, USS
and PSS (psutil memory_full_info, from the host: hostPID gives no extra view here) and
their mapped file pages (`*_process_rss_file_mb`, RssFile in /proc/PID/status).

Page cache is charged to the cgroup that first reads a page, so the Python runtime and
libraries read first by another container of the same image are not charged to this one.
To count them: the page cache is dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`,
root) before the DaemonSet starts and again before the sidecar's pod starts, so the file
pages the agent touches are read, and charged, by its own cgroup; pages the DaemonSet
agent still maps stay in the cache, charged to it, so `*_cgroup_usage_if_alone_mb` adds
the file pages the container's processes map beyond what its cgroup holds mapped
(process RssFile minus the cgroup's mapped file): an upper bound for the same sidecar on a
node without the DaemonSet agent (shared pages cannot be paged out, see
coral_lib/pagecache.py). `page_cache_dropped` says whether the drop could be done.

The drop is a worst case for the agent: it also drops the filesystem's metadata (the
disk's inode tables and directory blocks, and the dentry and inode caches), which the
agent then reads again, charged to it, for every file it opens or looks up at start. A
diagnostic run that, after the drop, stat'ed every file of the image's snapshots from the
bench's own process (as the unpacking containerd leaves them cached on a node that has
just pulled the image) read the DaemonSet agent's charge about 7 MB lower: about 4 MB of
page cache that was no file of the image's, and about 3 MB of kernel memory. That run is
not recorded; the figures here keep the worst case.

Needs root, containerd, runc and the image build tools; skipped otherwise.

The webhook's failurePolicy is Ignore (the manifests' default): a pod the webhook cannot
answer for in time is created as it came, without the sidecar, as a cluster would create
it. The bench then stops with an error naming the pod and the webhook's failure
(`injected_sidecar`) instead of measuring a sidecar that is not there.
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time

import psutil

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402
from coral_lib import client  # noqa: E402
from coral_lib.webhook import policy  # noqa: E402
from tests.support import containerd, coral_procs, image  # noqa: E402
from tests.support.kubecluster import NODES, SYSTEM, KubeCluster  # noqa: E402

MB = 1 << 20
WORK_ROUNDS = 5  # operations each agent serves before it is read (see the docstring)
DS_NODE = NODES[0]  # the DaemonSet agent's node: the app pods and the sidecar's pod run here


def app_pods() -> int:
    """The issue's "DaemonSet agent with 110 pods"; 10 for a --quick pass."""
    default = "10" if os.environ.get("BENCH_QUICK") else "110"
    return int(os.environ.get("BENCH_POD_MEMORY_PODS", default))


def run() -> dict:
    reason = image.why_not()
    if reason:
        return {"skipped": reason}
    agent_image = image.build()
    with tempfile.TemporaryDirectory(prefix="bench-pod-mem-") as tmp, \
            KubeCluster(tmp, image=agent_image) as kube:
        colony = kube.start_colony()
        pods = app_pods()
        figures: dict = {"nodes": len(NODES), "daemonset_node": DS_NODE, "app_pods": pods,
                         "goal_figure": "cgroup_usage_mb (memory.current; v1 usage_in_bytes)",
                         "page_cache_dropped": common.drop_page_cache()}
        kube.deploy_daemonset(colony, node_selector={"kubernetes.io/hostname": DS_NODE})
        kube.server.store.create({"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": "shop"}})
        for i in range(pods):
            kube.server.store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": f"app-{i}", "namespace": "shop"}, "spec": {
                "nodeName": DS_NODE, "containers": [{
                    "name": "app", "image": "docker.io/local/busybox:latest",
                    "ports": [{"containerPort": 8080}], "command": ["sleep", "100000"]}]}})
        coral_procs.wait_registered(colony, [f"node-{DS_NODE}"], timeout=120)

        def discovered() -> int:
            with colony.client() as c:
                return len({s["pod_name"] for s in c.list_services(namespace="shop")})
        coral_procs.wait_for(lambda: discovered() == pods, timeout=120 + pods,
                             what="app pods discovered")

        def running() -> int:  # discovery reads specs; an exec needs the container started
            return sum(kube.server.store.get("pods", f"app-{i}", namespace="shop")
                       .get("status", {}).get("phase") == "Running" for i in range(pods))
        coral_procs.wait_for(lambda: running() == pods, timeout=120 + pods,
                             what="app pods running")
        time.sleep(5)  # let start-up garbage settle before reading
        agents = {node: (pod["metadata"]["name"], kube.container_id(
            SYSTEM, pod["metadata"]["name"], "coral-agent"))
            for node, pod in sorted(kube.agent_pods().items())}
        for node, (name, cid) in agents.items():
            figures[f"daemonset_agent_{node}_idle_cgroup_usage_mb"] = _cgroup_memory_by_id(
                kube, SYSTEM, name, cid)["cgroup_usage_mb"]
        _work(colony, client.Targeting(namespace="shop"), expect=pods)
        for node, (name, cid) in agents.items():
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
    common.drop_page_cache()  # the sidecar reads its own file pages (those not mapped by others)
    calls_before = len(server.admission.calls)
    pod = server.store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "app", "namespace": "shop2"}, "spec": {
        "nodeName": DS_NODE, "hostNetwork": True, "containers": [{
            "name": "app", "image": "docker.io/local/busybox:latest",
            "command": ["sleep", "100000"]}]}})
    sidecar = injected_sidecar(pod, admission_calls=server.admission.calls[calls_before:])

    def registered() -> bool:
        with colony.client() as c:
            return any(a["agent_id"].startswith("pod-shop2.app") and a.get("connected")
                       for a in c.list_agents())
    coral_procs.wait_for(registered, timeout=120, what="sidecar agent registered")
    time.sleep(5)
    status = server.store.get("pods", "app", namespace="shop2")["status"]
    sidecar_id = status["initContainerStatuses"][0]["containerID"].split("://", 1)[1]
    out = {"sidecar_agent_idle_cgroup_usage_mb": _cgroup_memory_by_id(
        kube, "shop2", "app", sidecar_id)["cgroup_usage_mb"]}
    with colony.client() as c:  # the sidecar's own agent (the node's agent serves the pod too)
        (agent_id,) = [a["agent_id"] for a in c.list_agents()
                       if a["agent_id"].startswith("pod-shop2.app")]
    _work(colony, client.Targeting(agent=agent_id, container="app"), expect=1)
    for key, value in _cgroup_memory_by_id(kube, "shop2", "app", sidecar_id).items():
        out[f"sidecar_agent_{key}"] = value
    out["sidecar_container"] = sidecar["name"]
    return out


class SidecarNotInjected(RuntimeError):
    """The pod was admitted without the coral sidecar; the message says why."""


def injected_sidecar(pod: dict, *, admission_calls: list[dict]) -> dict:
    """The coral sidecar the webhook put into `pod` (as created), or SidecarNotInjected
    naming the pod and the cause read from the API server's admission calls for it: the
    webhook failed or timed out (failurePolicy Ignore admits the pod unchanged), answered
    without injecting, or was not called."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    for container in spec.get("initContainers") or ():
        if container.get("name") == policy.AGENT_NAME:
            return container
    name = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    failed = [c for c in admission_calls if c.get("error")]
    if failed:
        cause = "; ".join(f"webhook {c.get('webhook')} failed: {c['error']}" for c in failed)
        cause += " (failurePolicy Ignore admitted the pod without it)"
    elif admission_calls:
        warnings = [w for c in admission_calls for w in c.get("warnings") or ()]
        cause = ("the webhook allowed it without injecting; warnings: "
                 + ("; ".join(warnings) or "none"))
    else:
        cause = "no mutating webhook was called for it"
    raise SidecarNotInjected(f"pod {name} was created without the {policy.AGENT_NAME} "
                             f"sidecar: {cause}")


def _work(colony, targeting: client.Targeting, *, expect: int) -> None:
    """WORK_ROUNDS real execs through the colony on `targeting`, each ok on `expect`
    targets; then a settle like the idle reading's."""
    with colony.client() as c:
        for _ in range(WORK_ROUNDS):
            outcome = c.exec(targeting, argv=["cat", "/proc/self/status"], timeout=60)
            ok = [r for r in outcome.results if r["status"] == "ok"]
            if len(ok) != expect:
                raise RuntimeError(f"work exec: {len(ok)} of {expect} ok: {outcome.failed[:3]}")
    time.sleep(5)


def _cgroup_memory_by_id(kube: KubeCluster, namespace: str, pod: str, cid: str) -> dict:
    """The container's cgroup charge (the goal figure) and what it is made of, beside its
    processes' RSS, USS, PSS and mapped file pages."""
    uid = kube.server.store.get("pods", pod, namespace=namespace)["metadata"]["uid"]
    out: dict = {}
    for mount in containerd.cgroup_mounts():
        base = pathlib.Path(mount, f"kubepods/besteffort/pod{uid}/{cid}")
        if (base / "memory.current").exists():  # cgroup v2
            stat = _stat(base)
            out.update(cgroup_usage_mb=_mb(int((base / "memory.current").read_text())),
                       cgroup_anon_mb=_mb(stat["anon"]), cgroup_file_mb=_mb(stat["file"]),
                       cgroup_file_mapped_mb=_mb(stat["file_mapped"]),
                       cgroup_inactive_file_mb=_mb(stat["inactive_file"]))
        elif pathlib.Path(mount).name == "memory" and base.is_dir():  # cgroup v1
            stat = _stat(base)
            out.update(cgroup_usage_mb=_mb(int((base / "memory.usage_in_bytes").read_text())),
                       cgroup_anon_mb=_mb(stat.get("total_rss", stat["rss"])),
                       cgroup_file_mb=_mb(stat.get("total_cache", stat["cache"])),
                       cgroup_file_mapped_mb=_mb(stat.get("total_mapped_file",
                                                          stat["mapped_file"])),
                       cgroup_inactive_file_mb=_mb(stat.get("total_inactive_file",
                                                            stat["inactive_file"])))
        else:
            continue
        out["cgroup_working_set_mb"] = round(out["cgroup_usage_mb"]
                                             - out["cgroup_inactive_file_mb"], 1)
        out.update(_processes(base))
        out["cgroup_usage_if_alone_mb"] = round(out["cgroup_usage_mb"] + max(
            0.0, out["process_rss_file_mb"] - out["cgroup_file_mapped_mb"]), 1)
    return out


def _stat(base: pathlib.Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in
                                   (base / "memory.stat").read_text().splitlines())}


def _processes(base: pathlib.Path) -> dict:
    pids = [int(p) for p in (base / "cgroup.procs").read_text().split()]
    infos = [psutil.Process(p).memory_full_info() for p in pids]
    rss_file = 0
    for pid in pids:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
        rss_file += sum(int(line.split()[1]) * 1024 for line in status.splitlines()
                        if line.startswith(("RssFile:", "RssShmem:")))
    return {"processes": len(pids),
            "process_rss_mb": _mb(sum(i.rss for i in infos)),
            "process_uss_mb": _mb(sum(i.uss for i in infos)),
            "process_pss_mb": _mb(sum(i.pss for i in infos)),
            "process_rss_file_mb": _mb(rss_file)}


def _mb(value: int) -> float:
    return round(value / MB, 1)


def main() -> None:
    for key, value in run().items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
