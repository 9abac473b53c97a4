"""Containers with a security context and mounts, started in a pod made by
tests.support.containerd (whose own container helper takes name/image/argv/env only)."""

from __future__ import annotations

import grpc

from coral_lib._proto.cri.runtime.v1 import api_pb2
from tests.support import containerd


def start(node: containerd.Containerd, pod: containerd.PodHandle, *, name: str, image: str,
          argv: list[str], env: dict[str, str] | None = None, run_as_user: int | None = None,
          readonly_rootfs: bool = False, privileged: bool = False,
          mounts: list[tuple[str, str]] = (), share_pid: bool = True) -> str:
    """CreateContainer + StartContainer as kubelet does for one container of `pod`;
    mounts are (host path, container path), read-only. Returns the container id."""
    config = containerd.container_config({"name": name, "image": image, "argv": argv,
                                          "env": env or {}}, sandbox=pod.config,
                                         share_pid=share_pid)
    sc = config.linux.security_context
    sc.readonly_rootfs, sc.privileged = readonly_rootfs, privileged
    if run_as_user is not None:
        sc.run_as_user.value = run_as_user
    for host, inside in mounts:
        config.mounts.add(host_path=host, container_path=inside, readonly=True)
    try:
        created = node.runtime.CreateContainer(api_pb2.CreateContainerRequest(
            pod_sandbox_id=pod.sandbox_id, config=config, sandbox_config=pod.config), timeout=60)
        node.runtime.StartContainer(
            api_pb2.StartContainerRequest(container_id=created.container_id), timeout=60)
    except grpc.RpcError as exc:
        raise RuntimeError(f"container {name}: {exc.details()}\n{node.log_tail()}") from exc
    pod.containers[name] = created.container_id
    return created.container_id


def exec_sync(node: containerd.Containerd, container_id: str, argv: list[str], *,
              timeout: int = 60) -> tuple[int, str, str]:
    """ExecSync: (exit code, stdout, stderr) of argv run in the container."""
    reply = node.runtime.ExecSync(api_pb2.ExecSyncRequest(
        container_id=container_id, cmd=argv, timeout=timeout), timeout=timeout + 10)
    return reply.exit_code, reply.stdout.decode(errors="replace"), \
        reply.stderr.decode(errors="replace")

