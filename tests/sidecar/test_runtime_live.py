"""Issue 3 acceptance: live runtime detection against real processes — the agent started
inside a harness pod (shared PID namespace) detects K8S_SIDECAR when the env looks like a
pod; with the host's PID namespace it detects K8S_DAEMONSET."""

from __future__ import annotations

from coral_lib import runtime
from tests.sidecar import conftest

POD_ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "POD_NAME": "shop-7d9f",
           "POD_NAMESPACE": "shop", "NODE_NAME": "node-a"}


def _service_account(tmp_path):
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "namespace").write_text("shop")
    return str(sa)


def test_agent_inside_a_pod_detects_sidecar(shop_pod, tmp_path):
    ctx = conftest.run_probe(shop_pod, "detect", _service_account(tmp_path), env=POD_ENV)
    assert (ctx["mode"], ctx["visibility"], ctx["exec_backend"]) == (
        "K8S_SIDECAR", "own_pod", "chroot")
    assert ctx["can_exec"] and ctx["can_shell"], ctx
    assert ctx["pod_uid"] == shop_pod.uid  # from its own cgroup path
    assert ctx["container_id"] == ctx["_agent_container_id"]
    assert (ctx["pod_name"], ctx["pod_namespace"], ctx["node_name"]) == (
        "shop-7d9f", "shop", "node-a")
    assert ctx["warnings"] == []
    assert ctx["hostname"] == "shop-7d9f"  # the pod's UTS namespace


def test_forcing_daemonset_inside_a_pod_warns_about_hostpid(shop_pod, tmp_path):
    ctx = conftest.run_probe(shop_pod, "detect", _service_account(tmp_path),
                             env={**POD_ENV, "CORAL_AGENT_MODE": "daemonset"})
    assert ctx["mode"] == "K8S_DAEMONSET" and ctx["forced"]
    assert ctx["warnings"] == ["CORAL_AGENT_MODE=daemonset but PID 1 is a pause process, not"
                               " the host's init: hostPID is not enabled"]


def test_agent_in_the_host_pid_namespace_detects_daemonset(tmp_path):
    """This test process sees the node's PID 1 (hostPID), as a DaemonSet agent does."""
    ctx = runtime.detect(environ=POD_ENV, sa_dir=_service_account(tmp_path), cri_sockets=[])
    assert (ctx.mode, ctx.visibility) == (runtime.Mode.K8S_DAEMONSET,
                                          runtime.Visibility.ALL_NODE_PODS)
    assert ctx.exec_backend is runtime.ExecBackendKind.NSENTER and ctx.can_exec
