"""A private containerd (Debian package) with the CRI plugin, driven like kubelet drives it.

`Containerd(tmp_dir)` writes its own config (root, state, socket, opt under tmp_dir; never
the system service), starts containerd, waits until the CRI Version RPC answers, imports
locally built busybox images and creates pods through CRI with the labels kubelet sets.
On exit it removes every pod it made, stops containerd and its shims, unmounts leftovers
and deletes the cgroup parents it asked for. The settings are the ones
/work/shared/ENVIRONMENT.md found to work on this machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import time
import uuid

import grpc

from coral_lib._proto.cri.runtime.v1 import api_pb2, api_pb2_grpc
from coral_lib.ops import cri
from tests.support import oci_image

BUSYBOX_IMAGE = oci_image.image_ref("busybox")
DEFAULT_CGROUP_PARENT = "/k8s.io"  # containerd's parent when the sandbox names none
PAUSE_IMAGE = oci_image.image_ref(oci_image.PAUSE_NAME)

CONFIG_TEMPLATE = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni}/bin"
    conf_dir = "{cni}/conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
"""


@dataclasses.dataclass
class PodHandle:
    name: str
    namespace: str
    uid: str
    sandbox_id: str
    containers: dict[str, str]  # container name -> container id, in creation order
    cgroup_parent: str | None
    config: api_pb2.PodSandboxConfig = dataclasses.field(repr=False)


def config_text(base: pathlib.Path, *, socket: str, pause_image: str = PAUSE_IMAGE) -> str:
    return CONFIG_TEMPLATE.format(root=base / "root", state=base / "state", socket=socket,
                                  opt=base / "opt", cni=base / "cni", pause=pause_image)


def pod_labels(*, name: str, namespace: str, uid: str) -> dict[str, str]:
    return {cri.POD_NAME_LABEL: name, cri.POD_NAMESPACE_LABEL: namespace, cri.POD_UID_LABEL: uid}


def sandbox_config(
    *, name: str, namespace: str, uid: str, log_dir: str, share_pid: bool,
    cgroup_parent: str | None, annotations: dict[str, str],
) -> api_pb2.PodSandboxConfig:
    """What kubelet sends for a hostNetwork pod (network namespace NODE, no CNI needed)."""
    pid_mode = api_pb2.POD if share_pid else api_pb2.CONTAINER
    namespaces = api_pb2.NamespaceOption(network=api_pb2.NODE, pid=pid_mode, ipc=api_pb2.POD)
    return api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, uid=uid, namespace=namespace),
        log_directory=log_dir, labels=pod_labels(name=name, namespace=namespace, uid=uid),
        annotations=annotations,
        linux=api_pb2.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent or "",
            security_context=api_pb2.LinuxSandboxSecurityContext(namespace_options=namespaces)),
    )


def container_config(spec: dict, *, sandbox: api_pb2.PodSandboxConfig,
                     share_pid: bool) -> api_pb2.ContainerConfig:
    meta = sandbox.metadata
    labels = pod_labels(name=meta.name, namespace=meta.namespace, uid=meta.uid)
    labels[cri.CONTAINER_NAME_LABEL] = spec["name"]
    pid_mode = api_pb2.POD if share_pid else api_pb2.CONTAINER
    namespaces = api_pb2.NamespaceOption(network=api_pb2.NODE, pid=pid_mode, ipc=api_pb2.POD)
    return api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name=spec["name"]),
        image=api_pb2.ImageSpec(image=spec.get("image") or BUSYBOX_IMAGE),
        command=list(spec.get("argv") or ()), labels=labels,
        envs=[api_pb2.KeyValue(key=k, value=v) for k, v in (spec.get("env") or {}).items()],
        log_path=f"{spec['name']}/0.log",
        linux=api_pb2.LinuxContainerConfig(
            security_context=api_pb2.LinuxContainerSecurityContext(namespace_options=namespaces)),
    )


def cgroup_mounts(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    mounts = []
    for line in pathlib.Path(mountinfo).read_text().splitlines():
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].split()[0] in ("cgroup", "cgroup2"):
            mounts.append(fields[0].split()[4])
    return mounts


def mounts_under(prefix: str, mountinfo: str | None = None) -> list[str]:
    """The mount points starting with `prefix` in a /proc/self/mountinfo text (this
    process's, read now, when not given), deepest first: the order to unmount them in."""
    if mountinfo is None:
        mountinfo = pathlib.Path("/proc/self/mountinfo").read_text()
    points = [line.split()[4] for line in mountinfo.splitlines() if len(line.split()) > 4]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def unmount(points: list[str]) -> None:
    """Lazily unmount each of `points` (in the order given); one already gone is skipped."""
    for point in points:
        subprocess.run(["umount", "-l", point], capture_output=True)


def remove_cgroup_parents(cgroup_parent: str) -> None:
    """runc removes only the leaf cgroups: take the parents away deepest first."""
    parts = [p for p in cgroup_parent.strip("/").split("/") if p]
    for depth in range(len(parts), 0, -1):
        relative = "/".join(parts[:depth])
        for mount in cgroup_mounts():
            try:
                os.rmdir(os.path.join(mount, relative))
            except OSError:
                pass  # absent in this hierarchy, or still busy: nothing more to do here


class Containerd:
    def __init__(self, tmp_dir: str | os.PathLike, *, start_timeout: float = 30.0,
                 cni: bool = False) -> None:
        self.cni = cni  # pod networking: a private bridge + host-local IPAM (else NODE only)
        self.bridge = ""
        self.gateway = ""
        self.base = pathlib.Path(tmp_dir).resolve() / f"containerd-{uuid.uuid4().hex[:8]}"
        self.socket = str(self.base / "containerd.sock")
        self.log_path = self.base / "containerd.log"
        self.start_timeout = start_timeout
        self.startup_seconds = 0.0  # containerd start until the CRI Version RPC answers
        self.images: dict[str, str] = {}
        self.pods: list[PodHandle] = []
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._channel: grpc.Channel | None = None
        self._used_default_parent = False

    # ---- lifecycle ----

    def __enter__(self) -> Containerd:
        try:
            self.start()
            self.import_images()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        for sub in ("root", "state", "opt", "cni/bin", "cni/conf", "images", "logs"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        if self.cni:
            self._write_cni()
        config = self.base / "config.toml"
        config.write_text(config_text(self.base, socket=self.socket))
        self._log = open(self.log_path, "wb")
        started = time.monotonic()
        self._proc = subprocess.Popen(
            ["containerd", "--config", str(config), "--log-level", "info"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        while not cri.probe(self.socket, timeout=1.0):
            if self._proc.poll() is not None:
                raise RuntimeError(f"containerd exited with {self._proc.returncode}:\n"
                                   f"{self.log_tail()}")
            if time.monotonic() - started > self.start_timeout:
                raise RuntimeError(f"containerd CRI did not answer within {self.start_timeout}s"
                                   f":\n{self.log_tail()}")
            time.sleep(0.05)
        self.startup_seconds = time.monotonic() - started
        self._channel = grpc.insecure_channel("unix://" + self.socket)

    def _write_cni(self) -> None:
        """Debian's CNI plugins, a bridge named for this instance on a subnet of its own."""
        for plugin in pathlib.Path("/usr/lib/cni").iterdir():
            shutil.copy2(plugin, self.base / "cni" / "bin" / plugin.name)
        self.bridge = f"crb{uuid.uuid4().hex[:8]}"
        subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
        self.gateway = f"{subnet}.1"  # the bridge's address: this machine, seen from pods
        conflist = {"cniVersion": "0.4.0", "name": self.bridge, "plugins": [
            {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "dataDir": str(self.base / "cni" / "ipam"),
                      "ranges": [[{"subnet": f"{subnet}.0/24"}]]}},
            {"type": "loopback"}]}
        (self.base / "cni" / "conf" / "10-test.conflist").write_text(json.dumps(conflist))

    def import_images(self) -> None:
        layer = oci_image.layer_tar(oci_image.busybox_path())
        wanted = {
            "busybox": {"cmd": ("/bin/sh",)},
            oci_image.PAUSE_NAME: {"entrypoint": oci_image.PAUSE_ENTRYPOINT, "cmd": ()},
        }
        for name, spec in wanted.items():
            archive = oci_image.build_archive(self.base / "images" / f"{name}.tar",
                                              layer=layer, **spec)
            self.images[name] = oci_image.import_image(archive, name=name, address=self.socket)
        for ref in self.images.values():
            self._wait_image(ref)

    def _wait_image(self, ref: str, *, timeout: float = 10.0) -> None:
        # CRI learns about images imported with ctr from containerd events, a moment later.
        deadline = time.monotonic() + timeout
        request = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=ref))
        while not self.images_service.ImageStatus(request, timeout=5).image.id:
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRI does not see imported image {ref}:\n{self.log_tail()}")
            time.sleep(0.05)

    def close(self) -> None:
        for pod in list(self.pods):
            try:
                self.remove_pod(pod)
            except Exception:  # noqa: BLE001 - cleanup goes on whatever one pod did
                pass
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self._stop_process()
        self._kill_shims()
        self._unmount_leftovers()
        if self.bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        if self._used_default_parent:
            remove_cgroup_parents(DEFAULT_CGROUP_PARENT)  # rmdir: only when nobody else uses it
        shutil.rmtree(self.base, ignore_errors=True)

    def _stop_process(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _kill_shims(self) -> None:
        """Shims outlive containerd; ours are the ones started with our socket address."""
        for pid in self.shim_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def shim_pids(self) -> list[int]:
        pids = []
        for entry in pathlib.Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and b"containerd-shim" in argv[0] and self.socket.encode() in argv:
                pids.append(int(entry.name))
        return pids

    def _unmount_leftovers(self) -> None:
        unmount(mounts_under(str(self.base) + "/"))

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no containerd log)"
        return "\n".join(text.splitlines()[-lines:])

    # ---- CRI ----

    @property
    def runtime(self) -> api_pb2_grpc.RuntimeServiceStub:
        return api_pb2_grpc.RuntimeServiceStub(self._channel)

    @property
    def images_service(self) -> api_pb2_grpc.ImageServiceStub:
        return api_pb2_grpc.ImageServiceStub(self._channel)

    def run_pod(self, name: str, namespace: str, uid: str, *, containers: list[dict],
                share_pid: bool = True, cgroup_parent: str | None = None,
                annotations: dict[str, str] | None = None) -> PodHandle:
        """RunPodSandbox, then create and start each container as kubelet would."""
        log_dir = self.base / "logs" / f"{namespace}_{name}_{uid}"
        for spec in containers:
            (log_dir / spec["name"]).mkdir(parents=True, exist_ok=True)
        config = sandbox_config(name=name, namespace=namespace, uid=uid, log_dir=str(log_dir),
                                share_pid=share_pid, cgroup_parent=cgroup_parent,
                                annotations=annotations or {})
        try:
            reply = self.runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config),
                                               timeout=60)
        except grpc.RpcError as exc:
            raise RuntimeError(f"RunPodSandbox {namespace}/{name}: {exc.details()}\n"
                               f"{self.log_tail()}") from exc
        pod = PodHandle(name=name, namespace=namespace, uid=uid, sandbox_id=reply.pod_sandbox_id,
                        containers={}, cgroup_parent=cgroup_parent, config=config)
        self.pods.append(pod)
        self._used_default_parent |= not cgroup_parent
        for spec in containers:
            pod.containers[spec["name"]] = self._start_container(pod, spec, share_pid=share_pid)
        return pod

    def _start_container(self, pod: PodHandle, spec: dict, *, share_pid: bool) -> str:
        config = container_config(spec, sandbox=pod.config, share_pid=share_pid)
        try:
            created = self.runtime.CreateContainer(api_pb2.CreateContainerRequest(
                pod_sandbox_id=pod.sandbox_id, config=config, sandbox_config=pod.config),
                timeout=60)
            self.runtime.StartContainer(
                api_pb2.StartContainerRequest(container_id=created.container_id), timeout=60)
        except grpc.RpcError as exc:
            raise RuntimeError(f"container {spec['name']} of pod {pod.namespace}/{pod.name}: "
                               f"{exc.details()}\n{self.log_tail()}") from exc
        return created.container_id

    def stop_container(self, container_id: str) -> None:
        self.runtime.StopContainer(
            api_pb2.StopContainerRequest(container_id=container_id, timeout=0), timeout=30)

    def remove_pod(self, pod: PodHandle) -> None:
        """StopPodSandbox + RemovePodSandbox, then remove the cgroup parents."""
        try:
            self.runtime.StopPodSandbox(
                api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.sandbox_id), timeout=60)
            self.runtime.RemovePodSandbox(
                api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.sandbox_id), timeout=60)
        finally:
            if pod in self.pods:
                self.pods.remove(pod)
            if pod.cgroup_parent:
                remove_cgroup_parents(pod.cgroup_parent)
