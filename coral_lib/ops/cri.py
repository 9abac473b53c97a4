"""Backend: run the command in a pod's container through the node runtime's CRI ExecSync.

The DaemonSet agent talks gRPC to the node's containerd (or CRI-O) socket. Containers are
found by the labels kubelet puts on every container it creates, so the backend needs no
Kubernetes API access: `io.kubernetes.pod.name`, `io.kubernetes.pod.namespace` and
`io.kubernetes.container.name`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Sequence

import grpc

from coral_lib._proto.cri.runtime.v1 import api_pb2, api_pb2_grpc
from coral_lib.ops import base

POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_UID_LABEL = "io.kubernetes.pod.uid"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
# Containers never chosen as the default exec target: Coral's own injected agent.
SIDECAR_NAMES = frozenset({"coral-agent", "coral-sidecar"})
TIMEOUT_EXIT_CODE = 128 + 9  # same as a local command killed by SIGKILL on timeout

_SOCKET_PATHS = (
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/var/run/crio/crio.sock",
    "/run/cri-dockerd.sock",
)


def default_socket_paths() -> list[str]:
    """Well-known CRI sockets, `CONTAINER_RUNTIME_ENDPOINT` (as crictl reads it) first."""
    endpoint = os.environ.get("CONTAINER_RUNTIME_ENDPOINT", "")
    first = [endpoint.removeprefix("unix://")] if endpoint else []
    return first + [p for p in _SOCKET_PATHS if p not in first]


def probe(socket_path: str, *, timeout: float = 2.0) -> bool:
    """True when a CRI runtime answers the Version RPC on socket_path."""
    if not os.path.exists(socket_path):
        return False
    try:
        with grpc.insecure_channel(_target(socket_path)) as channel:
            stub = api_pb2_grpc.RuntimeServiceStub(channel)
            stub.Version(api_pb2.VersionRequest(version="v1"), timeout=timeout)
        return True
    except grpc.RpcError:
        return False


# ---- pure decisions ----

def describe(container: api_pb2.Container) -> dict:
    """A plain-dict view of a CRI container, as list_pod_containers returns it."""
    return {
        "id": container.id,
        "name": container.labels.get(CONTAINER_NAME_LABEL, container.metadata.name),
        "pod_sandbox_id": container.pod_sandbox_id,
        "state": api_pb2.ContainerState.Name(container.state),
        "image": container.image.image,
        "created_at": container.created_at,
        "labels": dict(container.labels),
    }


def choose_container(
    containers: Sequence[dict],
    *,
    pod: str,
    container_name: str = "",
    default_container: str = "",
    sidecar_names: Iterable[str] = SIDECAR_NAMES,
) -> dict:
    """Pick the exec target among a pod's running containers (dicts from `describe`).

    An explicit name must match; otherwise the pod's default-container annotation, else the
    first container (creation order, which is kubelet's spec order) that is not a sidecar.
    """
    ordered = sorted(containers, key=lambda c: c["created_at"])
    names = [c["name"] for c in ordered]
    wanted = container_name or default_container
    if wanted:
        for candidate in ordered:
            if candidate["name"] == wanted:
                return candidate
        raise base.OperationError(
            f"container {wanted!r} not found in pod {pod}; running containers: "
            f"{', '.join(names) or 'none'}"
        )
    skip = set(sidecar_names)
    for candidate in ordered:
        if candidate["name"] not in skip:
            return candidate
    raise base.OperationError(
        f"pod {pod} has no running application container; running containers: "
        f"{', '.join(names) or 'none'}"
    )


def exec_argv(request: base.ExecRequest) -> list[str]:
    """ExecSync carries only argv: express env and cwd through `env` and a tiny shell."""
    argv = base.effective_argv(request)
    if request.env:
        argv = ["env", *(f"{k}={v}" for k, v in request.env.items()), *argv]
    if request.cwd:
        argv = ["/bin/sh", "-c", 'cd "$0" && exec "$@"', request.cwd, *argv]
    return argv


def cap(data: bytes, limit: int) -> tuple[bytes, bool]:
    return (data[:limit], True) if len(data) > limit else (data, False)


def pid_from_info(info: dict[str, str]) -> int:
    """containerd's verbose ContainerStatus puts JSON with the task's host `pid` in info."""
    for value in info.values():
        try:
            pid = json.loads(value).get("pid", 0)
        except (ValueError, AttributeError):
            continue
        if isinstance(pid, int) and pid > 0:
            return pid
    return 0


def _target(socket_path: str) -> str:
    return "unix://" + os.path.abspath(socket_path)


# ---- I/O edge ----

class CRIBackend:
    name = "cri"

    def __init__(self, socket_path: str, *, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._channel: grpc.Channel | None = None
        self._stub: api_pb2_grpc.RuntimeServiceStub | None = None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel, self._stub = None, None

    def __enter__(self) -> CRIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _runtime(self) -> api_pb2_grpc.RuntimeServiceStub:
        # One stub per channel: building one makes a callable for each of the service's
        # methods, measured at ~10% of a DaemonSet agent's CPU per exec when made per call.
        stub = self._stub
        if stub is None:
            if self._channel is None:
                self._channel = grpc.insecure_channel(_target(self.socket_path))
            stub = self._stub = api_pb2_grpc.RuntimeServiceStub(self._channel)
        return stub

    def _call(self, method: str, request, *, timeout: float | None = None):
        if not os.path.exists(self.socket_path):
            raise base.OperationError(f"CRI socket {self.socket_path} does not exist")
        try:
            return getattr(self._runtime, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise _rpc_error(exc, method=method, socket_path=self.socket_path) from exc

    def version(self) -> api_pb2.VersionResponse:
        return self._call("Version", api_pb2.VersionRequest(version="v1"))

    def list_pod_containers(self, *, namespace: str, pod_name: str,
                            pod_uid: str = "") -> list[dict]:
        """The pod's running containers (see `describe`), oldest first. CRI label selectors
        match exactly; with pod_uid, containers of an earlier pod of that name are left out."""
        selector = {POD_NAME_LABEL: pod_name, POD_NAMESPACE_LABEL: namespace}
        if pod_uid:
            selector[POD_UID_LABEL] = pod_uid
        return self._list({"label_selector": selector})

    def _list(self, filter_fields: dict) -> list[dict]:
        running = api_pb2.ContainerStateValue(state=api_pb2.CONTAINER_RUNNING)
        request = api_pb2.ListContainersRequest(
            filter=api_pb2.ContainerFilter(state=running, **filter_fields))
        found = [describe(c) for c in self._call("ListContainers", request).containers]
        return sorted(found, key=lambda c: c["created_at"])

    def container_pid(self, container_id: str) -> int:
        """Host PID of the container's init process, 0 when the runtime does not say."""
        request = api_pb2.ContainerStatusRequest(container_id=container_id, verbose=True)
        return pid_from_info(dict(self._call("ContainerStatus", request).info))

    def _default_container(self, sandbox_id: str) -> str:
        request = api_pb2.ListPodSandboxRequest(filter=api_pb2.PodSandboxFilter(id=sandbox_id))
        for sandbox in self._call("ListPodSandbox", request).items:
            return sandbox.annotations.get(DEFAULT_CONTAINER_ANNOTATION, "")
        return ""

    def resolve(self, target: base.ExecTarget, *, pod_uid: str = "",
                default_container: str | None = None) -> dict:
        """The running container the target names (see `describe`): by namespace, pod and
        container name through kubelet's labels, exact matches only. A container id is
        never looked up (CRI's id filter matches prefixes: an escape and an oracle).
        default_container: the pod's default-container annotation when the caller knows
        it ("" = none); None reads it from the pod sandbox (one more CRI call)."""
        if not target.pod_name:
            raise base.OperationError("CRI exec needs a pod name")
        namespace = target.namespace or "default"
        pod = f"{namespace}/{target.pod_name}"
        containers = self.list_pod_containers(namespace=namespace, pod_name=target.pod_name,
                                              pod_uid=pod_uid)
        if not containers:
            raise base.OperationError(f"pod {pod} has no running containers on this node")
        default = default_container
        if default is None and not target.container_name:
            default = self._default_container(containers[0]["pod_sandbox_id"])
        return choose_container(containers, pod=pod, container_name=target.container_name,
                                default_container=default or "")

    def run(self, request: base.ExecRequest) -> base.ExecResult:
        container = self.resolve(request.target)
        if request.target.container_id and request.target.container_id != container["id"]:
            # the resolver pinned what it checked; anything else ran in between: refuse
            raise base.OperationError(
                f"container {container['name']!r} of pod {request.target.namespace}/"
                f"{request.target.pod_name} changed while the operation started; try again")
        return self.exec_sync(container["id"], request)

    def pinned(self, container_id: str) -> PinnedContainer:
        """A backend for one container this agent's resolver found and checked."""
        return PinnedContainer(self, container_id)

    def exec_sync(self, container_id: str, request: base.ExecRequest) -> base.ExecResult:
        """ExecSync `request` in the container with exactly this id: one CRI call."""
        if request.stdin:
            raise base.OperationError("CRI ExecSync cannot pass stdin to the command")
        seconds = max(1, math.ceil(request.timeout))
        sync = api_pb2.ExecSyncRequest(
            container_id=container_id, cmd=exec_argv(request), timeout=seconds)
        start = time.monotonic()
        try:
            reply = self._call("ExecSync", sync, timeout=seconds + self.timeout)
        except base.OperationError as exc:
            if not _is_timeout(exc):
                raise
            return base.ExecResult(
                exit_code=TIMEOUT_EXIT_CODE, duration=time.monotonic() - start,
                timed_out=True, error=str(exc))
        stdout, cut_out = cap(reply.stdout, request.max_output)
        stderr, cut_err = cap(reply.stderr, request.max_output)
        return base.ExecResult(
            exit_code=reply.exit_code, stdout=stdout, stderr=stderr,
            duration=time.monotonic() - start, truncated=cut_out or cut_err)


class PinnedContainer:
    """ExecSync into the one container the agent's resolver found by labels and checked
    against the pod's UID (agent/node.py), right before: no second lookup. The id is held
    here, never read from a request. Should the container stop meanwhile, ExecSync fails;
    the command never runs anywhere else."""

    name = "cri"

    def __init__(self, backend: CRIBackend, container_id: str) -> None:
        self.backend, self.container_id = backend, container_id

    def run(self, request: base.ExecRequest) -> base.ExecResult:
        return self.backend.exec_sync(self.container_id, request)


class _RPCError(base.OperationError):
    def __init__(self, message: str, *, code: grpc.StatusCode | None) -> None:
        super().__init__(message)
        self.code = code


def _rpc_error(exc: grpc.RpcError, *, method: str, socket_path: str) -> _RPCError:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        return _RPCError(f"CRI socket {socket_path} is unreachable: {details}", code=code)
    return _RPCError(f"CRI {method} on {socket_path} failed ({code.name if code else '?'}): "
                     f"{details}", code=code)


def _is_timeout(exc: base.OperationError) -> bool:
    # containerd reports an ExecSync timeout as a plain error whose text names the deadline.
    code = getattr(exc, "code", None)
    text = str(exc).lower()
    return code == grpc.StatusCode.DEADLINE_EXCEEDED or "timeout" in text and "exceeded" in text
