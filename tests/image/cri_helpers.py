"""Containers with a security context and mounts, started in a pod made by
tests.support.containerd (whose own container helper takes name/image/argv/env only)."""

from __future__ import annotations

import pathlib

import grpc

from coral_lib._proto.cri.runtime.v1 import api_pb2
from tests.support import containerd


def run_pod(node: containerd.Containerd, name: str, namespace: str, uid: str, *,
            privileged: bool = False) -> containerd.PodHandle:
    """An empty pod (shared PID namespace, host network) like Containerd.run_pod makes,
    optionally privileged (kubelet sets that when any container of the pod is)."""
    log_dir = node.base / "logs" / f"{namespace}_{name}_{uid}"
    log_dir.mkdir(parents=True, exist_ok=True)
    config = containerd.sandbox_config(name=name, namespace=namespace, uid=uid,
                                       log_dir=str(log_dir), share_pid=True, cgroup_parent=None,
                                       annotations={})
    config.linux.security_context.privileged = privileged
    reply = node.runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config), timeout=60)
    pod = containerd.PodHandle(name=name, namespace=namespace, uid=uid,
                               sandbox_id=reply.pod_sandbox_id, containers={},
                               cgroup_parent=None, config=config)
    node.pods.append(pod)
    node._used_default_parent = True  # its cgroups go under /k8s.io, removed at close
    return pod


def start(node: containerd.Containerd, pod: containerd.PodHandle, *, name: str, image: str,
          argv: list[str], env: dict[str, str] | None = None, run_as_user: int | None = None,
          readonly_rootfs: bool = False, privileged: bool = False,
          mounts: list[tuple[str, str]] = (), share_pid: bool = True,
          working_dir: str = "") -> str:
    """CreateContainer + StartContainer as kubelet does for one container of `pod`;
    mounts are (host path, container path), read-only. Returns the container id."""
    config = containerd.container_config({"name": name, "image": image, "argv": argv,
                                          "env": env or {}}, sandbox=pod.config,
                                         share_pid=share_pid)
    config.working_dir = working_dir
    sc = config.linux.security_context
    sc.readonly_rootfs, sc.privileged = readonly_rootfs, privileged
    if run_as_user is not None:
        sc.run_as_user.value = run_as_user
    for host, inside in mounts:
        config.mounts.add(host_path=host, container_path=inside, readonly=True)
    log_dir = pod.config.log_directory
    pathlib.Path(log_dir, name).mkdir(parents=True, exist_ok=True)
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

