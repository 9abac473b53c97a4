"""Acceptance (issue 4, "Real containerd"): exec through CRI ExecSync returns the container's
output and exit code; the target container is chosen by kubelet's io.kubernetes labels."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from coral_lib.ops import base, cri
from tests.cri.conftest import marker_container


def run(backend, argv, *, pod="web", container="", **kw) -> base.ExecResult:
    target = base.ExecTarget(namespace="shop", pod_name=pod, container_name=container)
    return backend.run(base.ExecRequest(argv=argv, target=target, **kw))


def test_exec_sync_returns_stdout_stderr_and_exit_code(backend, shop_pod):
    result = run(backend, ["echo out; echo err >&2; exit 7"], shell=True, container="app")
    assert (result.exit_code, result.stdout, result.stderr) == (7, b"out\n", b"err\n")
    assert not result.truncated and not result.timed_out


def test_exec_without_shell_passes_argv_verbatim(backend, shop_pod):
    result = run(backend, ["echo", "a b", "$HOME;"], container="app")
    assert result.stdout == b"a b $HOME;\n" and result.exit_code == 0


@pytest.mark.parametrize("container", ["coral-agent", "app", "worker"])
def test_exec_selects_container_by_io_kubernetes_labels(backend, shop_pod, container):
    """Each container wrote its own name to /tmp/marker in its private mount namespace."""
    result = run(backend, ["cat", "/tmp/marker"], container=container)
    assert result.stdout.decode().strip() == container


def test_a_container_id_alone_is_never_looked_up(backend, shop_pod):
    """Issue 10: CRI's id filter matches prefixes, so ids are never resolved; a pod is."""
    target = base.ExecTarget(container_id=shop_pod.containers["worker"])
    with pytest.raises(base.OperationError, match="needs a pod name"):
        backend.run(base.ExecRequest(argv=["cat", "/tmp/marker"], target=target))


def test_a_resolver_pinned_id_must_be_the_named_containers(backend, shop_pod):
    pinned = base.ExecTarget(namespace="shop", pod_name="web", container_name="worker",
                             container_id=shop_pod.containers["worker"])
    result = backend.run(base.ExecRequest(argv=["cat", "/tmp/marker"], target=pinned))
    assert result.stdout == b"worker\n"
    other = dataclasses.replace(pinned, container_id=shop_pod.containers["app"])
    with pytest.raises(base.OperationError, match="changed"):
        backend.run(base.ExecRequest(argv=["cat", "/tmp/marker"], target=other))


def test_a_pinned_container_runs_with_one_exec_sync_or_fails_never_elsewhere(node, backend):
    """Issue 15, fan-out: the agent's resolver pins the container it checked
    (CRIBackend.pinned) and ExecSync runs in exactly that one. Once it stopped, the call
    fails; the command never moves to another container of the pod."""
    pod = node.run_pod("pinned", "shop", "uid-pinned-1",
                       containers=[marker_container("one"), marker_container("two")])
    try:
        request = base.ExecRequest(argv=["cat", "/tmp/marker"])
        assert backend.pinned(pod.containers["two"]).run(request).stdout == b"two\n"
        node.stop_container(pod.containers["two"])
        with pytest.raises(base.OperationError, match="ExecSync"):
            backend.pinned(pod.containers["two"]).run(request)
        assert backend.pinned(pod.containers["one"]).run(request).stdout == b"one\n"
    finally:
        node.remove_pod(pod)


def test_default_container_is_first_non_sidecar(backend, shop_pod):
    assert run(backend, ["cat", "/tmp/marker"]).stdout == b"app\n"


def test_default_container_annotation_wins(backend, annotated_pod):
    assert run(backend, ["cat", "/tmp/marker"], pod="api").stdout == b"debug\n"


def test_unknown_container_error_lists_pod_containers(backend, shop_pod):
    with pytest.raises(base.OperationError) as err:
        run(backend, ["true"], container="nope")
    message = str(err.value)
    assert "'nope'" in message and "shop/web" in message
    assert "coral-agent, app, worker" in message


def test_unknown_pod_is_a_clear_error(backend, shop_pod):
    with pytest.raises(base.OperationError, match="shop/ghost has no running containers"):
        run(backend, ["true"], pod="ghost")


def test_missing_executable_is_an_operation_error(backend, shop_pod):
    with pytest.raises(base.OperationError, match="ExecSync"):
        run(backend, ["/no/such/binary"], container="app")


def test_timeout_kills_the_command(backend, shop_pod):
    result = run(backend, ["sleep", "30"], container="worker", timeout=1)
    assert result.timed_out and result.exit_code == cri.TIMEOUT_EXIT_CODE
    assert result.duration < 10
    left = run(backend, ["ps", "-o", "args"], container="worker").stdout
    assert b"sleep 30" not in left


def test_output_cap_truncates_each_stream(backend, shop_pod):
    script = "head -c 5000 /dev/zero; head -c 5000 /dev/zero >&2"
    result = run(backend, [script], shell=True, container="app", max_output=1000)
    assert (len(result.stdout), len(result.stderr), result.truncated) == (1000, 1000, True)
    whole = run(backend, [script], shell=True, container="app", max_output=5000)
    assert len(whole.stdout) == 5000 and not whole.truncated


def test_env_and_cwd_reach_the_command(backend, shop_pod):
    result = run(backend, ['echo "$ROLE $EXTRA $(pwd)"'], shell=True, container="app",
                 env={"EXTRA": "x y"}, cwd="/etc")
    assert result.stdout == b"a x y /etc\n"


def test_stdin_is_refused_with_a_reason(backend, shop_pod):
    with pytest.raises(base.OperationError, match="stdin"):
        run(backend, ["cat"], container="app", stdin=b"data")


def test_list_pod_containers_in_creation_order(backend, shop_pod):
    found = backend.list_pod_containers(namespace="shop", pod_name="web")
    assert [c["name"] for c in found] == ["coral-agent", "app", "worker"]
    assert [c["id"] for c in found] == list(shop_pod.containers.values())


def test_unreachable_socket_error_names_the_path(tmp_path):
    absent = str(tmp_path / "absent.sock")
    with pytest.raises(base.OperationError, match=absent):
        cri.CRIBackend(absent).run(base.ExecRequest(
            argv=["true"], target=base.ExecTarget(namespace="a", pod_name="b")))
    dead = str(tmp_path / "dead.sock")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(dead)  # bound but never listening: connections are refused
        backend = cri.CRIBackend(dead, timeout=2)
        with pytest.raises(base.OperationError, match=f"CRI socket {dead} is unreachable"):
            backend.list_pod_containers(namespace="a", pod_name="b")
        assert not cri.probe(dead, timeout=1)


def test_one_runtime_stub_serves_every_call_until_closed(backend, shop_pod):
    """Issue 15, fan-out ("say where the remaining overhead goes"): a stub built per call
    cost a DaemonSet agent ~10% of its CPU per exec; the backend keeps one per channel,
    and a closed backend reconnects with a fresh one."""
    first = backend._runtime
    assert run(backend, ["true"], container="app").exit_code == 0
    assert backend._runtime is first
    backend.close()
    assert backend._runtime is not first
    assert run(backend, ["true"], container="app").exit_code == 0
