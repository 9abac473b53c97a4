"""A pod with share_pid=True: every container sees all of the pod's processes in one PID
namespace whose PID 1 is the sandbox (pause) process; without it each container is alone."""

from __future__ import annotations

import os

from coral_lib.ops import base
from tests.cri import conftest
from tests.support import oci_image


def ps(backend, *, pod: str, container: str) -> dict[int, str]:
    target = base.ExecTarget(namespace="shop", pod_name=pod, container_name=container)
    script = 'for p in /proc/[0-9]*; do echo "${p#/proc/} $(tr "\\0" " " < $p/cmdline)"; done'
    out = backend.run(base.ExecRequest(argv=[script], shell=True, target=target)).stdout
    rows = (line.split(" ", 1) for line in out.decode().splitlines())
    return {int(pid): args.strip() for pid, args in rows}


def test_shared_pid_namespace_pause_is_pid_1(backend, shop_pod):
    procs = ps(backend, pod="web", container="worker")
    assert procs[1] == " ".join(oci_image.PAUSE_ENTRYPOINT)
    for name in ("coral-agent", "app", "worker"):
        assert f"sleep {conftest.sleep_seconds(name)}" in procs.values()


def test_shared_pid_namespace_is_one_kernel_namespace(backend, shop_pod):
    inodes = {os.stat(f"/proc/{backend.container_pid(cid)}/ns/pid").st_ino
              for cid in shop_pod.containers.values()}
    mounts = {os.stat(f"/proc/{backend.container_pid(cid)}/ns/mnt").st_ino
              for cid in shop_pod.containers.values()}
    assert len(inodes) == 1 and len(mounts) == 3


def test_without_share_pid_each_container_is_alone(backend, isolated_pod):
    procs = ps(backend, pod="solo", container="two")
    assert procs[1] == f"sleep {conftest.sleep_seconds('two')}"
    assert f"sleep {conftest.sleep_seconds('one')}" not in procs.values()
    assert " ".join(oci_image.PAUSE_ENTRYPOINT) not in procs.values()
