"""Sidecar mode: the containers of the agent's own pod, found in the shared PID namespace.

Commands run in an app container through chroot into `/proc/<pid>/root` as the app
process's own user (ops/chroot.py): the pod shares net/ipc/uts/pid already, so the
sidecar needs no capability beyond the runtime's default set (Pod Security baseline).

The agent never reaches outside its pod: a target naming another pod or namespace is
refused, so one tenant's sidecar cannot be used against another tenant's workload.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from collections.abc import Mapping

from coral_lib import service
from coral_lib.discovery import procfs
from coral_lib.ops import base, chroot


@dataclasses.dataclass(frozen=True)
class PodIdentity:
    name: str
    namespace: str
    node: str
    default_container: str = ""
    labels_file: str = ""  # the downward API file of the pod's labels (webhook-injected)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PodIdentity:
        return cls(name=env.get("POD_NAME", ""), namespace=env.get("POD_NAMESPACE", ""),
                   node=env.get("NODE_NAME", ""),
                   default_container=env.get("CORAL_DEFAULT_CONTAINER", ""),
                   labels_file=env.get("CORAL_POD_LABELS_FILE", ""))


def parse_downward_labels(text: str) -> dict[str, str]:
    """Pure: the downward API's labels file (`key="value"` per line, Go-quoted values)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            continue
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            continue
        if isinstance(parsed, str):
            out[key.strip()] = parsed
    return out


def pod_labels(path: str) -> dict[str, str]:
    """The pod's labels from its downward API file; {} when there is none."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_downward_labels(handle.read())
    except OSError:
        return {}


def outside_pod(target: base.ExecTarget, pod: PodIdentity) -> str:
    """Why a target is outside this pod ('' when it is inside). Pure."""
    if target.pod_name and target.pod_name != pod.name:
        return f"pod {target.namespace or pod.namespace}/{target.pod_name}"
    if target.namespace and target.namespace != pod.namespace:
        return f"namespace {target.namespace}"
    return ""


class SidecarScope:
    """Discovery and exec targeting inside one pod, from the shared /proc."""

    def __init__(self, pod: PodIdentity, *, proc_root: str = "/proc") -> None:
        self.pod, self.proc_root = pod, proc_root

    def containers(self) -> list[procfs.Container]:
        return procfs.scan(proc_root=self.proc_root, self_pid=_self_pid(self.proc_root),
                           read_hidden=self._read_as_owner)

    def _read_as_owner(self, pid: int, name: str) -> bytes:
        # a non-root app's environ is hidden from a root sidecar without SYS_PTRACE
        return chroot.read_as_owner(f"{self.proc_root}/{pid}/{name}", pid,
                                    proc_root=self.proc_root)

    def discover(self) -> list[service.ServiceInfo]:
        """The pod's services, each carrying the pod's labels under its own."""
        labels = pod_labels(self.pod.labels_file)
        return [dataclasses.replace(s, labels={**labels, **s.labels}) for s in procfs.services(
            self.containers(), node_name=self.pod.node, namespace=self.pod.namespace,
            pod_name=self.pod.name)]

    def target_container(self, target: base.ExecTarget) -> procfs.Container:
        """The container of this pod the target names, by exact name (never by id)."""
        where = outside_pod(target, self.pod)
        if where:
            raise base.Refused(
                f"refused: this sidecar agent serves pod {self.pod.namespace}/{self.pod.name} "
                f"only, not {where}")
        name = target.container_name or self.pod.default_container
        try:
            return procfs.select_container(self.containers(), name, by_id=False)
        except procfs.ContainerNotFound as exc:  # reported like any other refusal
            raise base.OperationError(str(exc)) from exc

    def resolve(self, request: base.ExecRequest) -> tuple[base.ExecBackend, base.ExecRequest]:
        found = self.target_container(request.target)
        target = dataclasses.replace(
            request.target, namespace=self.pod.namespace, pod_name=self.pod.name,
            container_name=found.name, container_id=found.container_id, pid=found.main_pid,
            resolved_by="sidecar")
        return chroot.ChrootBackend(proc_root=self.proc_root), dataclasses.replace(
            request, target=target)


def _self_pid(proc_root: str) -> int | None:
    return None if proc_root == "/proc" else os.getpid()
