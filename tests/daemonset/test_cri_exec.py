"""Node-wide operations (issue 4): `coral exec --pod P -n NS` through the colony to the
DaemonSet agent of the pod's node, into a real containerd container: CRI ExecSync when the
socket is given, else nsenter via hostPID /proc and the pod UID in the cgroup path."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.daemonset.conftest import pod, registry
from tests.support import containerd, coral_procs
from tests.support.coral_procs import wait_for


def _why_not() -> str:
    missing = [b for b in ("containerd", "containerd-shim-runc-v2", "runc", "ctr")
               if shutil.which(b) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install -y containerd runc busybox-static)"
    return "" if os.geteuid() == 0 else "containerd needs root"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    if _why_not():
        pytest.skip(f"containerd cannot run here: {_why_not()}")
    with containerd.Containerd(tmp_path_factory.mktemp("ds-cri")) as node:
        yield node


@pytest.fixture
def web_pod(kubeapi, runtime):
    """Pod shop/web in the API server (node-a) and running in containerd with the same
    io.kubernetes labels, UID and a kubelet-style cgroup parent; status names the real id."""
    created = kubeapi.store.create(pod("web", containers=[
        {"name": "app", "image": containerd.BUSYBOX_IMAGE, "ports": [{"containerPort": 8080}]}]))
    uid = created["metadata"]["uid"]
    handle = runtime.run_pod("web", "shop", uid, cgroup_parent=f"/kubepods/besteffort/pod{uid}",
                             containers=[{"name": "app", "argv": [
                                 "sh", "-c", "echo in-app > /tmp/marker; exec sleep 100000"]}])
    kubeapi.store.patch("pods", "web", {"status": {"containerStatuses": [
        {"name": "app", "ready": True, "containerID": f"containerd://{handle.containers['app']}"}]}},
        namespace="shop", subresource="status")
    yield handle
    runtime.remove_pod(handle)


def _exec(colony, *argv: str) -> dict:
    run = coral_procs.coral("exec", "--pod", "web", "-n", "shop", "-o", "json", *argv,
                            env=colony.operator_env)
    assert run.stdout, run.stderr
    (result,) = json.loads(run.stdout)["results"]
    return result


@pytest.mark.parametrize("backend", ["cri", "nsenter"])
def test_coral_exec_pod_runs_in_the_container_with_output_and_exit_code(
        kubeapi, colony, node_agents, runtime, web_pod, backend):
    flags = ["--cri-socket", runtime.socket if backend == "cri" else ""]  # "": nsenter
    agent = node_agents("node-a", flags=flags)
    node_agents("node-b")  # another node's agent must not get the operation
    wait_for(lambda: {s["pod_name"] for s in registry(colony)} == {"web"}, timeout=30,
             what="pod web registered")
    coral_procs.wait_registered(colony, ["node-node-a", "node-node-b"])
    marker = _exec(colony, "--", "cat", "/tmp/marker")
    assert (marker["agent"], marker["rc"], marker["stdout"]) == ("node-node-a", 0, "in-app\n"), \
        (marker, agent.log()[-2000:])
    hostname = _exec(colony, "--", "cat", "/etc/hostname")
    assert hostname["rc"] == 0 and hostname["stdout"].strip(), hostname
    failing = _exec(colony, "--shell", "--", "echo oops >&2; exit 3")
    assert (failing["rc"], failing["stderr"]) == (3, "oops\n"), failing
    with colony.client() as c:
        agents = {a["agent_id"]: a for a in c.list_agents()}
    assert agents["node-node-a"]["runtime"]["exec_backend"] == backend


def test_exec_on_a_deleted_pod_is_refused_naming_it(kubeapi, colony, node_agents):
    kubeapi.store.create(pod("ghost", node="node-a"))
    node_agents("node-a", flags=["--cri-socket", ""])
    wait_for(lambda: registry(colony), timeout=30, what="registered")
    kubeapi.store.delete("pods", "ghost", namespace="shop")
    wait_for(lambda: not registry(colony), timeout=10, what="ghost gone")
    run = coral_procs.coral("exec", "--pod", "ghost", "-n", "shop", "--", "true",
                            env=colony.operator_env)
    assert run.returncode != 0 and "ghost" in (run.stderr + run.stdout)


@pytest.mark.parametrize("backend", ["cri", "nsenter"])
def test_coral_shell_pod_enters_the_container(kubeapi, colony, node_agents, runtime, web_pod,
                                              backend):
    """`coral shell --pod` in DaemonSet mode: a PTY inside the pod's container, exit code kept."""
    from coral_lib import client
    from coral_lib._proto.coral.agent.v1 import agent_pb2

    flags = ["--cri-socket", runtime.socket if backend == "cri" else ""]  # "": nsenter
    node_agents("node-a", flags=flags)
    wait_for(lambda: {s["pod_name"] for s in registry(colony)} == {"web"}, timeout=30,
             what="pod web registered")
    coral_procs.wait_registered(colony, ["node-node-a"])

    def inputs():
        yield agent_pb2.ShellInput(stdin=b"cat /tmp/marker; exit 4\n")

    data, code = b"", None
    with colony.client() as c:
        for out in c.shell(client.Targeting(pod="web", namespace="shop"), inputs=inputs()):
            assert out.WhichOneof("output") != "error", out.error
            data += out.data
            code = out.exit_code if out.WhichOneof("output") == "exit_code" else code
    assert b"in-app" in data and code == 4


def test_coral_tap_pod_captures_in_the_pods_network_namespace(kubeapi, colony, node_agents,
                                                             runtime, web_pod):
    """DaemonSet tap: the agent enters the pod's network namespace (here the node's, as the
    CRI pod uses host networking) and streams the filtered packets back."""
    import socket
    import threading
    import time

    from coral_lib import client

    node_agents("node-a", flags=["--cri-socket", runtime.socket])
    wait_for(lambda: {s["pod_name"] for s in registry(colony)} == {"web"}, timeout=30,
             what="pod web registered")
    coral_procs.wait_registered(colony, ["node-node-a"])
    port, stop = coral_procs.free_port(), threading.Event()

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not stop.wait(0.1):
                sock.sendto(b"coral-tap-probe", ("127.0.0.1", port))

    sender = threading.Thread(target=send, daemon=True)
    time.sleep(0.5)
    sender.start()
    packets, summary = [], None
    try:
        with colony.client() as c:
            for event in c.tap(client.Targeting(pod="web", namespace="shop"),
                               filter_expr=f"udp port {port}", duration=3, max_packets=5):
                assert not isinstance(event, client.TargetFailed), event.error
                if isinstance(event, client.Packet):
                    packets.append(event.data)
                elif isinstance(event, client.CaptureEnded):
                    summary = event
    finally:
        stop.set()
    assert packets and all(b"coral-tap-probe" in p for p in packets)
    assert summary is not None and summary.packets == len(packets) <= 5
