"""Issue 3 acceptance with real containerd + runc: sidecar /proc discovery in a CRI pod whose
containers share one PID namespace finds exactly the app containers (not pause, not the
agent's own container), keyed by containerd's container ids and named through CRI."""

from __future__ import annotations

from coral_lib.discovery import procfs


def _ns_pid(host_pid: int) -> int:
    with open(f"/proc/{host_pid}/status") as handle:
        for line in handle:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {host_pid}")


def test_procfs_scan_of_a_containerd_pod_finds_the_app_containers(backend, shop_pod):
    agent_id = shop_pod.containers["coral-agent"]
    agent_pid = backend.container_pid(agent_id)
    names = {c["id"]: c["name"] for c in backend.list_pod_containers(
        namespace=shop_pod.namespace, pod_name=shop_pod.name)}
    # The agent container's view of the pod: its own /proc shows the shared PID namespace.
    found = procfs.scan(proc_root=f"/proc/{agent_pid}/root/proc", self_pid=_ns_pid(agent_pid),
                        names=names)
    assert sorted(c.name for c in found) == ["app", "worker"]
    assert {c.container_id for c in found} == {shop_pod.containers["app"],
                                               shop_pod.containers["worker"]}
    services = procfs.services(found, namespace=shop_pod.namespace, pod_name=shop_pod.name)
    assert {(s.container_name, s.port) for s in services} == {("app", 0), ("worker", 0)}
