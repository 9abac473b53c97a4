"""Issue 10 item 2 at the agent: a DaemonSet agent resolves containers itself (exact
namespace, pod and container name; checked against the pod's UID) and refuses a raw
container id in every operation with one message. Real containerd, the API server fixture
and a real PodWatcher; no colony (tests/security/test_trust_authz.py has the end to end)."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib.agent import handlers, node
from coral_lib.discovery import kubernetes
from coral_lib.ops import base, cri
from tests.daemonset.conftest import kubeapi, pod  # noqa: F401
from tests.daemonset.test_cri_exec import runtime  # noqa: F401
from tests.support import containerd
from tests.support.coral_procs import wait_for


def run_pod(kubeapi, runtime, name: str, ns: str, container: str):  # noqa: F811
    """A pod in the API server (node-a) and running in containerd with kubelet's labels and
    UID; its status names the real container id, as kubelet's would."""
    created = kubeapi.store.create(pod(name, namespace=ns, containers=[
        {"name": container, "image": containerd.BUSYBOX_IMAGE,
         "ports": [{"containerPort": 8080}]}]))
    uid = created["metadata"]["uid"]
    handle = runtime.run_pod(name, ns, uid, cgroup_parent=f"/kubepods/besteffort/pod{uid}",
                             containers=[{"name": container, "argv": ["sleep", "100000"]}])
    kubeapi.store.patch("pods", name, {"status": {"containerStatuses": [
        {"name": container, "ready": True,
         "containerID": f"containerd://{handle.containers[container]}"}]}},
        namespace=ns, subresource="status")
    return handle


@pytest.fixture
def pods(kubeapi, runtime):  # noqa: F811
    web = run_pod(kubeapi, runtime, "web", "shop", "app")
    dns = run_pod(kubeapi, runtime, "coredns", "kube-system", "coredns")
    yield web, dns
    runtime.remove_pod(web)
    runtime.remove_pod(dns)


@pytest.fixture
def watcher(kubeapi):  # noqa: F811
    """node-a's real pod watch cache against the API server fixture."""
    api = kubernetes.api_from(kubeconfig=kubeapi.kubeconfig_path)
    watch = kubernetes.PodWatcher(api, node_name="node-a")
    stop = threading.Event()
    thread = threading.Thread(target=watch.run, args=(stop,), daemon=True)
    thread.start()
    yield watch
    stop.set()


def _synced(watch, *keys: str) -> None:
    wait_for(lambda: set(keys) <= set(watch.pods), timeout=20, what=f"watch cache has {keys}")


def _request(**target) -> base.ExecRequest:
    return base.ExecRequest(argv=["true"], target=base.ExecTarget(**target))


@pytest.mark.parametrize("backend", ["cri", "nsenter"])
def test_resolver_finds_the_named_container_and_reports_what_it_entered(
        runtime, pods, watcher, backend):  # noqa: F811
    web, _ = pods
    _synced(watcher, "shop/web", "kube-system/coredns")
    resolver = node.ExecResolver(watcher, cri_socket=runtime.socket if backend == "cri" else "")
    chosen, request = resolver(_request(namespace="shop", pod_name="web", container_name="app"))
    assert chosen.name == backend
    got = request.target
    assert (got.namespace, got.pod_name, got.container_name, got.container_id) == (
        "shop", "web", "app", web.containers["app"])
    assert got.resolved_by == {"cri": "cri", "nsenter": "pod-status"}[backend]
    # ExecSync needs no pid; nsenter enters through one. A shell, tap or trace asks for it.
    assert (got.pid > 0) == (backend == "nsenter")
    _, entering = resolver(dataclasses.replace(request, needs_pid=True))
    assert entering.target.pid > 0


@pytest.mark.parametrize("backend", ["cri", "nsenter"])
def test_resolver_names_no_container_outside_the_pod_and_errors_alike(
        runtime, pods, watcher, backend):  # noqa: F811
    """Another pod's container name, its id, a 1-character id prefix and a name that exists
    nowhere all fail with the same words (only the echoed name differs)."""
    _, dns = pods
    _synced(watcher, "shop/web", "kube-system/coredns")
    resolver = node.ExecResolver(watcher, cri_socket=runtime.socket if backend == "cri" else "")
    real = dns.containers["coredns"]
    shapes = set()
    for wanted in ("coredns", real, real[:1], "nosuch"):
        with pytest.raises(base.OperationError) as err:
            resolver(_request(namespace="shop", pod_name="web", container_name=wanted))
        shapes.add(str(err.value).replace(repr(wanted), "<name>"))
    assert len(shapes) == 1, shapes
    assert "kube-system" not in shapes.pop()


def test_a_pod_of_another_namespace_is_not_reached_by_name(runtime, pods, watcher):  # noqa: F811
    _synced(watcher, "shop/web", "kube-system/coredns")
    resolver = node.ExecResolver(watcher, cri_socket=runtime.socket)
    with pytest.raises(base.OperationError, match="pod shop/coredns is not on node node-a"):
        resolver(_request(namespace="shop", pod_name="coredns"))
    # RBAC judged namespace "" for an operator who named no namespace: no guess is made
    with pytest.raises(base.OperationError, match="name a pod and its namespace"):
        resolver(_request(pod_name="web"))


def _handlers(resolver) -> handlers.Handlers:
    ok = agent_pb2.Capability(available=True)
    ctx = agent_pb2.RuntimeContext(mode=agent_pb2.RUNTIME_MODE_K8S_DAEMONSET, node_name="node-a",
                                   can_exec=ok, can_shell=ok, can_tap=ok)
    return handlers.Handlers(runtime=ctx, resolve=resolver)


def test_agent_refuses_a_raw_container_id_in_exec_shell_and_tap_with_one_message(
        runtime, pods, watcher):  # noqa: F811
    """Before the fix the CRI resolver obeyed `container_id` (a prefix, through CRI's id
    filter). Now the id is refused whatever it is; trace shares tap's path
    (Handlers._target_pid) and the colony refuses all four first."""
    web, dns = pods
    _synced(watcher, "shop/web", "kube-system/coredns")
    h = _handlers(node.ExecResolver(watcher, cri_socket=runtime.socket))
    real = dns.containers["coredns"]
    for forged in (real, real[:1], "f" * 64):
        target = agent_pb2.ExecTarget(namespace="shop", pod_name="web", container_id=forged)
        result = h.exec(agent_pb2.ExecRequest(argv=["true"], target=target))
        assert (result.exit_code, result.error) == (-1, handlers.RAW_CONTAINER_ID)
        assert not result.HasField("entered")
        with pytest.raises(base.OperationError) as shell_err:
            h.shell(agent_pb2.ShellStart(argv=["true"], target=target))
        with pytest.raises(base.OperationError) as tap_err:
            h.tap(agent_pb2.TapRequest(target=target, duration_seconds=1),
                  on_packet=lambda p: None, stop=threading.Event())
        assert str(shell_err.value) == str(tap_err.value) == handlers.RAW_CONTAINER_ID
    ok = h.exec(agent_pb2.ExecRequest(argv=["true"], target=agent_pb2.ExecTarget(
        namespace="shop", pod_name="web", container_name="app")))
    assert ok.exit_code == 0, ok.error
    assert (ok.entered.node, ok.entered.namespace, ok.entered.pod, ok.entered.container,
            ok.entered.container_id, ok.entered.resolved_by) == (
        "node-a", "shop", "web", "app", web.containers["app"], "cri")


@pytest.mark.parametrize(("labels", "ours"), [
    ({cri.POD_NAMESPACE_LABEL: "shop", cri.POD_NAME_LABEL: "web", cri.POD_UID_LABEL: "u1"},
     True),
    ({cri.POD_NAMESPACE_LABEL: "shop", cri.POD_NAME_LABEL: "web", cri.POD_UID_LABEL: "old"},
     False),
    ({cri.POD_NAMESPACE_LABEL: "kube-system", cri.POD_NAME_LABEL: "web",
      cri.POD_UID_LABEL: "u1"}, False),
    ({cri.POD_NAMESPACE_LABEL: "shop", cri.POD_NAME_LABEL: "web"}, False),
])
def test_check_belongs_needs_namespace_name_and_uid(labels, ours):
    container = {"name": "app", "labels": labels}
    if ours:
        node.check_belongs(container, namespace="shop", pod_name="web", pod_uid="u1")
        return
    with pytest.raises(base.OperationError, match="^container 'app' not found in pod shop/web$"):
        node.check_belongs(container, namespace="shop", pod_name="web", pod_uid="u1")


def _cri_calls(resolver: node.ExecResolver) -> list[str]:
    """Record the CRI methods the resolver's real backend calls (a spy: every call still
    goes to containerd)."""
    calls: list[str] = []
    real = resolver.cri._call

    def recorded(method, request, **kw):
        calls.append(method)
        return real(method, request, **kw)

    resolver.cri._call = recorded
    return calls


def test_one_exec_in_a_pod_is_two_cri_calls(runtime, pods, watcher):  # noqa: F811
    """Issue 15, fan-out: an exec into a pod costs ListContainers (find and check the
    container) and ExecSync, nothing more: no ContainerStatus for a pid the command does
    not need, no second ListContainers before ExecSync. Only what enters the container
    itself (shell, tap, trace) asks for the pid."""
    web, _ = pods
    _synced(watcher, "shop/web")
    resolver = node.ExecResolver(watcher, cri_socket=runtime.socket)
    calls = _cri_calls(resolver)
    h = _handlers(resolver)
    result = h.exec(agent_pb2.ExecRequest(argv=["echo", "in-app"], target=agent_pb2.ExecTarget(
        namespace="shop", pod_name="web", container_name="app")))
    assert (result.exit_code, result.stdout, result.error) == (0, b"in-app\n", "")
    assert result.entered.container_id == web.containers["app"]
    assert calls == ["ListContainers", "ExecSync"]
    calls.clear()
    _, request = resolver(dataclasses.replace(
        _request(namespace="shop", pod_name="web", container_name="app"), needs_pid=True))
    assert request.target.pid > 0 and calls == ["ListContainers", "ContainerStatus"]


def test_default_container_comes_from_the_pod_in_the_watch_cache(
        kubeapi, runtime, watcher):  # noqa: F811
    """No container named: the pod's kubectl.kubernetes.io/default-container annotation,
    read from the watch cache (kubelet copies it to the sandbox, where CRI would need one
    more call to read it), picks the container."""
    created = kubeapi.store.create(pod(
        "multi", annotations={cri.DEFAULT_CONTAINER_ANNOTATION: "second"}, containers=[
            {"name": n, "image": containerd.BUSYBOX_IMAGE} for n in ("first", "second")]))
    uid = created["metadata"]["uid"]
    handle = runtime.run_pod("multi", "shop", uid, cgroup_parent=f"/kubepods/besteffort/pod{uid}",
                             containers=[{"name": n, "argv": [
                                 "sh", "-c", f"echo {n} > /tmp/marker; exec sleep 100000"]}
                                 for n in ("first", "second")])
    try:
        _synced(watcher, "shop/multi")
        resolver = node.ExecResolver(watcher, cri_socket=runtime.socket)
        calls = _cri_calls(resolver)
        result = _handlers(resolver).exec(agent_pb2.ExecRequest(
            argv=["cat", "/tmp/marker"], target=agent_pb2.ExecTarget(
                namespace="shop", pod_name="multi")))
        assert (result.exit_code, result.stdout) == (0, b"second\n"), result.error
        assert calls == ["ListContainers", "ExecSync"]
    finally:
        runtime.remove_pod(handle)
