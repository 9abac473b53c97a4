"""Issue 16, "Targeting every pod": `--pod` reaches any running pod a DaemonSet agent sees,
with or without a registered service; `--namespace` alone works; `--all` on DaemonSet agents
means every discovered pod (it used to reach the agent itself, which refused). Real
containerd pods, the API server fixture, real colony and `coral agent node` processes."""

from __future__ import annotations

import json

import pytest

from tests.daemonset.conftest import pod, registry
from tests.daemonset.test_cri_exec import runtime  # noqa: F401
from tests.support import containerd, coral_procs
from tests.support.coral_procs import wait_for


def _run_pod(kubeapi, runtime, name: str, *, ports: bool):  # noqa: F811
    """A pod of namespace shop on node-a in the API server and in containerd; with ports
    it has a service, without it has none."""
    container = {"name": "app", "image": containerd.BUSYBOX_IMAGE}
    if ports:
        container["ports"] = [{"containerPort": 8080}]
    created = kubeapi.store.create(pod(name, containers=[container]))
    uid = created["metadata"]["uid"]
    handle = runtime.run_pod(name, "shop", uid, cgroup_parent=f"/kubepods/besteffort/pod{uid}",
                             containers=[{"name": "app", "argv": [
                                 "sh", "-c", f"echo {name} > /tmp/who; exec sleep 100000"]}])
    kubeapi.store.patch("pods", name, {"status": {"phase": "Running", "containerStatuses": [
        {"name": "app", "ready": True, "containerID": f"containerd://{handle.containers['app']}"}
    ]}}, namespace="shop", subresource="status")
    return handle


@pytest.fixture
def shop_pods(kubeapi, runtime):  # noqa: F811
    handles = [_run_pod(kubeapi, runtime, "web", ports=True),
               _run_pod(kubeapi, runtime, "batch", ports=False)]
    yield handles
    for handle in handles:
        runtime.remove_pod(handle)


def _exec(colony, *targeting: str) -> list[dict]:
    run = coral_procs.coral("exec", "-o", "json", *targeting, "--", "cat", "/tmp/who",
                            env=colony.operator_env)
    assert run.stdout, run.stderr
    return sorted(json.loads(run.stdout)["results"], key=lambda r: r["pod"])


def test_pod_namespace_and_all_reach_every_pod_a_daemonset_agent_sees(
        kubeapi, colony, node_agents, runtime, shop_pods):  # noqa: F811
    node_agents("node-a", flags=["--cri-socket", runtime.socket])
    coral_procs.wait_registered(colony, ["node-node-a"])
    wait_for(lambda: {s["pod_name"] for s in registry(colony)} == {"web"}, timeout=30,
             what="only pod web has a service")

    def reaches_batch() -> bool:
        run = coral_procs.coral("exec", "-o", "json", "--pod", "batch", "-n", "shop", "--",
                                "true", env=colony.operator_env)
        return run.returncode == 0
    wait_for(reaches_batch, timeout=30, what="pod batch (no service) targetable")

    (batch,) = _exec(colony, "--pod", "batch", "-n", "shop")
    assert (batch["agent"], batch["rc"], batch["stdout"]) == ("node-node-a", 0, "batch\n"), batch
    (batch,) = _exec(colony, "--pod", "batch")  # the pod alone: the colony knows its namespace
    assert batch["stdout"] == "batch\n", batch
    everything = _exec(colony, "--namespace", "shop")
    assert [(r["pod"], r["stdout"]) for r in everything] == [
        ("batch", "batch\n"), ("web", "web\n")], everything
    # --all: one target per pod the agent sees, never the agent itself. The agent's own pod
    # (coral-agent-node-a, Running in the API server fixture) is one of them; the fixture's
    # shortcut is that it has no container in containerd, so only its exec fails here.
    all_pods = {(r["namespace"], r["pod"]): r for r in _exec(colony, "--all")}
    assert all(pod for _, pod in all_pods), all_pods
    assert {k: r["rc"] for k, r in all_pods.items() if k[0] == "shop"} == {
        ("shop", "batch"): 0, ("shop", "web"): 0}, all_pods


def test_a_deleted_pod_stops_being_a_target(kubeapi, colony, node_agents, runtime, shop_pods):  # noqa: F811
    node_agents("node-a", flags=["--cri-socket", runtime.socket])
    coral_procs.wait_registered(colony, ["node-node-a"])
    wait_for(lambda: len(_exec(colony, "--namespace", "shop")) == 2, timeout=30,
             what="both pods targetable")
    kubeapi.store.delete("pods", "batch", namespace="shop")
    wait_for(lambda: [r["pod"] for r in _exec(colony, "--namespace", "shop")] == ["web"],
             timeout=30, what="pod batch gone from the targets")
