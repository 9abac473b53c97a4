"""Issue 3 acceptance: exec runs inside the chosen container (its mount namespace's marker
file, the pod's hostname, network and PID namespace, its env and cwd); namespace entry
without the capabilities fails with an error naming them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from coral_lib.discovery import procfs
from coral_lib.ops import base, nsenter
from tests.sidecar import conftest

BACKEND = nsenter.NsenterBackend()


def _run(pid: int, argv, **kwargs) -> base.ExecResult:
    return BACKEND.run(base.ExecRequest(argv=argv, target=base.ExecTarget(pid=pid), **kwargs))


@pytest.mark.parametrize("name", ["web", "cache", "worker"])
def test_exec_runs_inside_the_chosen_container(shop_pod, name):
    """Marker file only that container's mount namespace has, and the pod's hostname."""
    pid = shop_pod.containers[name].host_pid
    result = _run(pid, ["sh", "-c", "cat /srv/coral-marker; echo; hostname"])
    assert (result.exit_code, result.stderr) == (0, b"")
    assert result.stdout.decode().split() == [name, "shop-7d9f"]
    with open("/proc/self/mounts") as fh:
        assert " /srv " not in fh.read()  # the marker really is container-only


def test_exec_enters_all_six_namespaces_of_the_target(shop_pod):
    """Not just a chroot through /proc/<pid>/root: the very same namespace objects."""
    pid = shop_pod.containers["cache"].host_pid
    kinds = ["mnt", "uts", "ipc", "net", "pid", "cgroup"]
    script = "for n in " + " ".join(kinds) + "; do readlink /proc/self/ns/$n; done"
    result = _run(pid, ["sh", "-c", script])
    assert result.stdout.decode().split() == [os.readlink(f"/proc/{pid}/ns/{k}") for k in kinds]
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")


def test_exec_enters_the_pod_pid_and_network_namespaces(shop_pod):
    pid = shop_pod.containers["worker"].host_pid
    result = _run(pid, ["sh", "-c", "cat /proc/1/comm; busybox wget -qO- http://127.0.0.1:9090/"
                                    " >/dev/null && echo reached"])
    assert result.stdout.decode().split() == ["pause", "reached"], result.stderr


def test_exec_uses_the_containers_env_and_cwd_with_request_env_on_top(shop_pod):
    pid = shop_pod.containers["web"].host_pid
    result = _run(pid, ["sh", "-c", "echo $OTEL_SERVICE_NAME $CORAL_CONTAINER_NAME $EXTRA; pwd"],
                  env={"EXTRA": "from-request", "CORAL_CONTAINER_NAME": "overridden"})
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "checkout overridden from-request"
    assert lines[1] == os.readlink(f"/proc/{pid}/cwd")
    assert _run(pid, ["pwd"], cwd="/srv").stdout == b"/srv\n"


def test_exec_timeout_and_output_cap(shop_pod):
    pid = shop_pod.containers["web"].host_pid
    slow = _run(pid, ["sleep", "30"], timeout=0.5)
    # a timed-out command's session gets SIGTERM, then SIGKILL if it lingers
    assert slow.timed_out and slow.exit_code in (128 + signal.SIGTERM, 128 + signal.SIGKILL)
    big = _run(pid, ["sh", "-c", "yes | head -c 100000"], max_output=1000)
    assert big.truncated and big.stdout == b"y\n" * 500
    assert _run(pid, ["sh", "-c", "exit 3"]).exit_code == 3


def test_exec_from_a_sidecar_agent_inside_the_pod(shop_pod):
    """The agent in its own container selects by name and enters with pod-local pids."""
    answer = conftest.run_probe(shop_pod, "exec", "cache", "cat", "/srv/coral-marker")
    assert (answer["exit_code"], answer["stdout"]) == (0, "cache")
    assert answer["pid"] == shop_pod.containers["cache"].ns_pid


def test_exec_of_a_missing_program_is_an_operation_error(shop_pod):
    pid = shop_pod.containers["web"].host_pid
    with pytest.raises(base.OperationError, match="failed to execute no-such-tool"):
        _run(pid, ["no-such-tool"])


def test_exec_without_target_or_with_gone_target_is_a_clear_error():
    with pytest.raises(base.OperationError, match="needs a target pid"):
        _run(0, ["true"])
    with pytest.raises(base.OperationError, match="target process 999999999 not found"):
        _run(999999999, ["true"])


_DROPPED = textwrap.dedent("""
    import sys
    from coral_lib.ops import base, nsenter
    try:
        nsenter.NsenterBackend().run(base.ExecRequest(
            argv=["true"], target=base.ExecTarget(pid=int(sys.argv[1]))))
    except base.OperationError as exc:
        print(exc)
""")


@pytest.mark.parametrize("drop, message", [
    ("-sys_admin", "namespace entry denied: missing CAP_SYS_ADMIN"),
    ("-sys_ptrace", "namespace entry denied: missing CAP_SYS_PTRACE"),
    ("-sys_admin,-sys_ptrace", "namespace entry denied: missing CAP_SYS_ADMIN, CAP_SYS_PTRACE"),
])
def test_namespace_entry_denied_names_the_missing_capability(shop_pod, drop, message):
    pid = shop_pod.containers["web"].host_pid
    out = subprocess.run(
        ["setpriv", "--inh-caps=-all", f"--bounding-set={drop}", sys.executable, "-c", _DROPPED,
         str(pid)], capture_output=True, text=True, cwd=conftest.REPO, timeout=30, check=True)
    assert out.stdout.strip() == message, out.stderr


def test_the_kernel_refuses_namespace_entry_without_cap_sys_admin(shop_pod):
    """The capability check matches reality: nsenter itself fails the same way."""
    pid = shop_pod.containers["web"].host_pid
    out = subprocess.run(
        ["setpriv", "--inh-caps=-all", "--bounding-set=-sys_admin",
         *nsenter.nsenter_argv(pid), "true"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "Operation not permitted" in out.stderr


def test_find_container_pid_helpers_for_the_daemonset_path(shop_pod):
    cache = shop_pod.containers["cache"]
    assert nsenter.find_container_pid(container_id=cache.container_id) == cache.host_pid
    assert nsenter.find_container_pid(container_id=f"containerd://{cache.container_id[:12]}") \
        == cache.host_pid
    assert nsenter.find_pod_container_pid(pod_uid=shop_pod.uid,
                                          container_name="cache") == cache.host_pid
    with pytest.raises(base.OperationError, match="containers: web, cache"):
        nsenter.find_pod_container_pid(pod_uid=shop_pod.uid, container_name="db")
    with pytest.raises(base.OperationError, match="no container .* containers: web, cache"):
        nsenter.find_pod_container_pid(pod_uid=shop_pod.uid,
                                       container_name=cache.container_id[:12])
    with pytest.raises(base.OperationError, match="no process of container"):
        nsenter.find_container_pid(container_id="f" * 64)


def test_selected_default_container_is_never_pause_or_agent(shop_pod):
    first = procfs.select_container(procfs.scan(proc_root=shop_pod.proc_root))
    assert first.name == "web" and first.process_name == "sh"
