"""A pod runner that does what kubelet does, for the API fixture and the private containerd.

`PodRunner(server, containerd, node, root)` watches the fixture for pods bound to `node`
(`spec.nodeName`, set by the fixture's scheduler or a workload controller) and runs each on
the containerd through CRI, as kubelet would: a sandbox with the pod's namespaces
(hostNetwork, hostPID, hostIPC, shareProcessNamespace) and cgroup parent
`/kubepods/besteffort/pod<uid>`; init containers one at a time, in order; native sidecars
(init containers with `restartPolicy: Always`) started before the app containers and kept
running; the securityContext mapped by tests/support/podspec.py; env (value, fieldRef,
secretKeyRef, configMapKeyRef, `$(VAR)`); volumes (emptyDir, hostPath, secret, configMap,
downwardAPI, projected with real pod-bound service account tokens from the fixture's
TokenRequest, refreshed at 80% of their life); kubelet's managed /etc/hosts for
pod-network pods (localhost, the pod's own name and IP, `hostAliases`);
exec/httpGet/tcpSocket readiness and liveness probes; restarts per restartPolicy; and the
pod status (phase, conditions,
container statuses, restart counts, podIP) written back through `pods/status`. A pod
deleted from the API has its sandbox stopped and removed.

FIXTURE BEHAVIOUR (not kubelet): the crash-loop back-off starts at `backoff` seconds
(default 0.5) rather than 10 s and is capped at 5 s; pod IPs exist only for hostNetwork
pods (the node's 127.0.0.1) unless containerd has CNI; no startup probes, lifecycle hooks,
resource limits or graceful termination periods; the pod is polled every `interval`.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import logging
import os
import pathlib
import shutil
import socket
import ssl
import threading
import time

import grpc

from coral_lib._proto.cri.runtime.v1 import api_pb2
from tests.support import containerd as containerd_
from tests.support import podspec
from tests.support.kubeapi import errors, kubelet, objects

log = logging.getLogger(__name__)
RUNNING, EXITED = api_pb2.CONTAINER_RUNNING, api_pb2.CONTAINER_EXITED


@dataclasses.dataclass
class Probe:
    spec: dict
    started: float
    last: float = 0.0
    successes: int = 0
    failures: int = 0


@dataclasses.dataclass
class Slot:
    """One container of the pod across its restarts."""
    spec: dict
    init: bool
    container_id: str = ""
    restarts: int = 0
    ready: bool = False
    started_at: str = ""
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    terminated: dict | None = None
    last_terminated: dict | None = None
    not_before: float = 0.0
    backoff: float = 0.0
    readiness: Probe | None = None
    liveness: Probe | None = None
    done: bool = False  # a regular init container that succeeded


def probe_once(spec: dict, *, runtime, container_id: str, pod_ip: str,
               ports: dict[str, int]) -> bool:
    """One probe attempt, as kubelet's prober runs it; True on success."""
    timeout = int(spec.get("timeoutSeconds") or 1)
    if "exec" in spec:
        try:
            reply = runtime.ExecSync(api_pb2.ExecSyncRequest(
                container_id=container_id, cmd=list(spec["exec"].get("command") or []),
                timeout=timeout), timeout=timeout + 5)
        except grpc.RpcError:
            return False
        return reply.exit_code == 0
    kind = "httpGet" if "httpGet" in spec else "tcpSocket"
    action = spec[kind]
    port = action.get("port")
    port = ports.get(port, 0) if isinstance(port, str) and not port.isdigit() else int(port)
    host = action.get("host") or pod_ip
    try:
        if kind == "tcpSocket":
            socket.create_connection((host, port), timeout=timeout).close()
            return True
        if action.get("scheme", "HTTP").upper() == "HTTPS":
            ctx = ssl._create_unverified_context()  # kubelet skips verification too
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        headers = {h["name"]: h["value"] for h in action.get("httpHeaders") or []}
        conn.request("GET", action.get("path") or "/", headers={"User-Agent": "kube-probe/1.32",
                                                                  **headers})
        status = conn.getresponse().status
        conn.close()
        return 200 <= status < 400
    except (OSError, http.client.HTTPException):
        return False


class PodWorker:
    """Runs one pod until stop(); owns its sandbox, volumes and status writes."""

    def __init__(self, runner: PodRunner, pod: dict) -> None:
        self.runner = runner
        self.pod = pod
        meta = pod["metadata"]
        self.name, self.namespace, self.uid = meta["name"], meta["namespace"], meta["uid"]
        self.spec = pod.get("spec") or {}
        self.dir = runner.root / "pods" / self.uid
        self.cgroup_parent = f"/kubepods/besteffort/pod{self.uid}"
        self.sandbox_id = ""
        self.sandbox: api_pb2.PodSandboxConfig | None = None
        self.pod_ip = ""
        self.start_time = objects.now()
        self.slots = ([Slot(c, True) for c in self.spec.get("initContainers") or []]
                      + [Slot(c, False) for c in self.spec.get("containers") or []])
        self.phase = "Pending"
        self.volumes: dict[str, pathlib.Path] = {}
        self.error = ""
        self._stop = threading.Event()
        self._last_status: dict | None = None
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"pod-{self.namespace}-{self.name}")

    @property
    def runtime(self):
        return self.runner.containerd.runtime

    def stop(self) -> None:
        self._stop.set()

    # ---- lifecycle -------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set() and not self._volumes_ready():
                self._write_status()
                self._stop.wait(self.runner.interval * 5)
            self._run_sandbox()
            while not self._stop.is_set():
                self._step()
                self._write_status()
                self._stop.wait(self.runner.interval)
        except Exception as exc:  # noqa: BLE001 - a broken pod must not take the node down
            log.exception("pod %s/%s failed", self.namespace, self.name)
            self.error = str(exc)
            self.phase = "Failed" if not self._stop.is_set() else self.phase
            self._write_status()
        finally:
            self._stop.wait()
            self._teardown()

    def _teardown(self) -> None:
        if self.sandbox_id:
            try:
                self.runtime.StopPodSandbox(
                    api_pb2.StopPodSandboxRequest(pod_sandbox_id=self.sandbox_id), timeout=60)
                self.runtime.RemovePodSandbox(
                    api_pb2.RemovePodSandboxRequest(pod_sandbox_id=self.sandbox_id), timeout=60)
            except grpc.RpcError as exc:
                log.warning("removing sandbox of %s/%s: %s", self.namespace, self.name,
                            exc.details())
        containerd_.remove_cgroup_parents(self.cgroup_parent)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run_sandbox(self) -> None:
        log_dir = self.dir / "logs"
        for slot in self.slots:
            (log_dir / slot.spec["name"]).mkdir(parents=True, exist_ok=True)
        self.sandbox = podspec.sandbox_config(self.pod, log_dir=str(log_dir),
                                              cgroup_parent=self.cgroup_parent)
        reply = self.runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=self.sandbox),
                                           timeout=120)
        self.sandbox_id = reply.pod_sandbox_id
        if self.spec.get("hostNetwork"):
            self.pod_ip = self.runner.host_ip
        else:
            status = self.runtime.PodSandboxStatus(
                api_pb2.PodSandboxStatusRequest(pod_sandbox_id=self.sandbox_id), timeout=30)
            self.pod_ip = status.status.network.ip
            self._write_etc_hosts()
        # fieldRef status.podIP / status.hostIP see the addresses as kubelet knows them.
        self.pod = {**self.pod, "status": {**(self.pod.get("status") or {}),
                                           "podIP": self.pod_ip, "hostIP": self.runner.host_ip}}
        self.phase = "Pending"

    # ---- one reconcile step ------------------------------------------------------------
    def _step(self) -> None:
        self._observe()
        now = time.monotonic()
        policy = self.spec.get("restartPolicy") or "Always"
        for slot in self.slots:
            if slot.init and not podspec.is_sidecar(slot.spec) and slot.done:
                continue
            if slot.container_id and slot.terminated is None:
                self._probe(slot, now)
                if slot.init and not podspec.is_sidecar(slot.spec):
                    return  # a regular init container must finish before the next starts
                continue
            if slot.terminated is not None:
                code = slot.terminated["exitCode"]
                if slot.init and not podspec.is_sidecar(slot.spec) and code == 0:
                    slot.done = True
                    continue
                if not podspec.should_restart(self.spec, slot.spec, code, init=slot.init):
                    if slot.init:
                        self.phase = "Failed"
                        return
                    continue
                if now < slot.not_before:
                    slot.waiting = ("CrashLoopBackOff", f"back-off restarting failed container "
                                    f"{slot.spec['name']} in pod {podspec.pod_ref(self.pod)}")
                    if slot.init and not podspec.is_sidecar(slot.spec):
                        return
                    continue
            if not self._start(slot):
                if slot.init:
                    return
                continue
            if slot.init and not podspec.is_sidecar(slot.spec):
                return  # wait for it to finish
        self.phase = self._phase(policy)

    def _phase(self, policy: str) -> str:
        app = [s for s in self.slots if not s.init]
        if any(s.container_id and s.terminated is None for s in app):
            return "Running"
        if all(s.terminated is not None for s in app):
            codes = [s.terminated["exitCode"] for s in app]
            if policy == "Never" or (policy == "OnFailure" and not any(codes)):
                return "Succeeded" if not any(codes) else "Failed"
        return "Running" if any(s.container_id for s in app) else "Pending"

    def _start(self, slot: Slot) -> bool:
        """Create and start the container (a new one per attempt, the old one removed)."""
        attempt = slot.restarts + (1 if slot.terminated is not None else 0)
        try:
            # kubelet's service variables first; the container's own env wins over them.
            env = dict(self.runner.service_env())
            env.update(podspec.container_env(self.pod, slot.spec, self._store_get))
            env = list(env.items())
            image = self.runner.image_user(slot.spec.get("image", ""))
            if image is None:
                # Nothing can be pulled here: a missing image is a pull failure.
                slot.waiting = ("ErrImageNeverPull" if slot.spec.get("imagePullPolicy")
                                == "Never" else "ImagePullBackOff",
                                f'Back-off pulling image "{slot.spec.get("image", "")}"')
                return False
            uid, user = image
            podspec.verify_run_as_non_root(self.pod, slot.spec, uid, user)
            config = podspec.container_config(self.pod, slot.spec, env=env,
                                              mounts=self._mounts(slot.spec),
                                              attempt=attempt)
        except podspec.ConfigError as exc:
            slot.waiting = ("CreateContainerConfigError", str(exc))
            return False
        old = slot.container_id
        try:
            created = self.runtime.CreateContainer(api_pb2.CreateContainerRequest(
                pod_sandbox_id=self.sandbox_id, config=config, sandbox_config=self.sandbox),
                timeout=60)
            self.runtime.StartContainer(
                api_pb2.StartContainerRequest(container_id=created.container_id), timeout=60)
        except grpc.RpcError as exc:
            slot.waiting = ("CreateContainerError" if not slot.container_id
                            else "RunContainerError", exc.details() or "")
            self._arm_backoff(slot)
            return False
        if old:
            try:
                self.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=old),
                                             timeout=30)
            except grpc.RpcError:
                pass  # already gone with a restart; nothing else refers to it
        now = time.monotonic()
        slot.container_id, slot.waiting, slot.restarts = created.container_id, None, attempt
        if slot.terminated is not None:
            slot.last_terminated = slot.terminated
        slot.terminated, slot.started_at, slot.ready = None, objects.now(), False
        slot.readiness = Probe(slot.spec["readinessProbe"], now) if slot.spec.get(
            "readinessProbe") else None
        slot.liveness = Probe(slot.spec["livenessProbe"], now) if slot.spec.get(
            "livenessProbe") else None
        slot.ready = slot.readiness is None
        return True

    def _arm_backoff(self, slot: Slot) -> None:
        slot.backoff = min(5.0, slot.backoff * 2 if slot.backoff else self.runner.backoff)
        slot.not_before = time.monotonic() + slot.backoff

    def _observe(self) -> None:
        for slot in self.slots:
            if not slot.container_id or slot.terminated is not None:
                continue
            try:
                status = self.runtime.ContainerStatus(api_pb2.ContainerStatusRequest(
                    container_id=slot.container_id), timeout=30).status
            except grpc.RpcError:
                continue
            if status.state == EXITED:
                slot.terminated = {
                    "exitCode": status.exit_code,
                    "reason": status.reason or ("Completed" if status.exit_code == 0
                                                else "Error"),
                    "startedAt": slot.started_at, "finishedAt": objects.now(),
                    "containerID": f"containerd://{slot.container_id}"}
                slot.ready = False
                self._arm_backoff(slot)

    def _probe(self, slot: Slot, now: float) -> None:
        ports = {p["name"]: int(p["containerPort"]) for p in slot.spec.get("ports") or []
                 if p.get("name")}
        for kind in ("liveness", "readiness"):
            probe: Probe | None = getattr(slot, kind)
            if probe is None:
                continue
            spec = probe.spec
            if now - probe.started < int(spec.get("initialDelaySeconds") or 0):
                continue
            if now - probe.last < int(spec.get("periodSeconds") or 10):
                continue
            probe.last = now
            ok = probe_once(spec, runtime=self.runtime, container_id=slot.container_id,
                            pod_ip=self.pod_ip, ports=ports)
            if ok:
                probe.successes, probe.failures = probe.successes + 1, 0
            else:
                probe.successes, probe.failures = 0, probe.failures + 1
            if kind == "readiness":
                if ok and probe.successes >= int(spec.get("successThreshold") or 1):
                    slot.ready = True
                elif not ok and probe.failures >= int(spec.get("failureThreshold") or 3):
                    slot.ready = False
            elif not ok and probe.failures >= int(spec.get("failureThreshold") or 3):
                log.info("liveness probe failed: killing %s of %s/%s", slot.spec["name"],
                         self.namespace, self.name)
                probe.failures = 0
                self.runtime.StopContainer(api_pb2.StopContainerRequest(
                    container_id=slot.container_id, timeout=1), timeout=30)
                return  # observed as exited next step, then restarted per restartPolicy

    # ---- volumes -----------------------------------------------------------------------
    def _store_get(self, plural: str, name: str, namespace: str) -> dict | None:
        try:
            return self.runner.server.store.get(plural, name, namespace=namespace)
        except errors.ApiError:
            return None

    def _volumes_ready(self) -> bool:
        """Prepare the volumes; on failure say why (kubelet's FailedMount) and retry."""
        try:
            self._prepare_volumes()
            return True
        except (podspec.ConfigError, errors.ApiError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            for slot in self.slots:
                slot.waiting = ("ContainerCreating", f"MountVolume.SetUp failed: {message}")
            return False

    def _prepare_volumes(self) -> None:
        for volume in self.spec.get("volumes") or []:
            name = volume["name"]
            target = self.dir / "volumes" / name
            if "hostPath" in volume:
                self.volumes[name] = host_path(volume["hostPath"], name)
                continue
            if "projected" in volume:
                target = self._projected(volume)
            else:
                target.mkdir(parents=True, exist_ok=True)
            if "emptyDir" in volume:
                os.chmod(target, 0o777)
            elif "secret" in volume:
                self._write_keys(target, "secrets", volume["secret"].get("secretName", ""),
                                 volume["secret"])
            elif "configMap" in volume:
                self._write_keys(target, "configmaps", volume["configMap"].get("name", ""),
                                 volume["configMap"])
            elif "downwardAPI" in volume:
                self._write_downward(target, volume["downwardAPI"])
            elif "projected" not in volume:
                raise podspec.ConfigError(f"volume {name}: unsupported type "
                                          f"{sorted(set(volume) - {'name'})}")
            self.volumes[name] = target

    def _projected(self, volume: dict) -> pathlib.Path:
        projector = self.runner.projector
        directory = projector.root / self.namespace / self.name / volume["name"]
        directory.mkdir(parents=True, exist_ok=True)
        for source in volume["projected"].get("sources") or []:
            if "secret" in source:
                self._write_keys(directory, "secrets", source["secret"].get("name", ""),
                                 source["secret"])
            elif "configMap" in source:
                self._write_keys(directory, "configmaps", source["configMap"].get("name", ""),
                                 source["configMap"])
            elif "downwardAPI" in source:
                self._write_downward(directory, source["downwardAPI"])
        if any("serviceAccountToken" in s for s in volume["projected"].get("sources") or []):
            projector.project_volume(self.pod, volume, owner=self._token_owner())
        return directory

    def _token_owner(self) -> int | None:
        """kubelet gives the token to the pod's user when every container runs as one uid."""
        uids = {podspec.effective_security(self.spec, c).get("runAsUser")
                for c in (self.spec.get("initContainers") or []) + self.spec.get("containers", [])}
        return int(uids.pop()) if len(uids) == 1 and None not in uids else None

    def _write_keys(self, target: pathlib.Path, plural: str, name: str, source: dict) -> None:
        obj = self._store_get(plural, name, self.namespace)
        if obj is None:
            if source.get("optional"):
                return
            kind = "secret" if plural == "secrets" else "configmap"
            raise podspec.ConfigError(f'{kind} "{name}" not found')
        data = {k: (base64.b64decode(v) if plural == "secrets" else v.encode())
                for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        items = source.get("items") or [{"key": k, "path": k} for k in sorted(data)]
        mode = int(source.get("defaultMode", 0o644))
        for item in items:
            if item["key"] not in data:
                raise podspec.ConfigError(f"configmap references non-existent config key: "
                                          f"{item['key']}")
            _write_file(target / item["path"], data[item["key"]], int(item.get("mode", mode)))

    def _write_downward(self, target: pathlib.Path, source: dict) -> None:
        mode = int(source.get("defaultMode", 0o644))
        for item in source.get("items") or []:
            value = podspec.field_value(self.pod, item["fieldRef"]["fieldPath"])
            _write_file(target / item["path"], value.encode(), int(item.get("mode", mode)))

    def _write_etc_hosts(self) -> None:
        """kubelet's managed /etc/hosts of a pod-network pod: localhost, the pod's own name
        and address, then the pod's hostAliases."""
        lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost",
                 "::1\tlocalhost ip6-localhost ip6-loopback",
                 f"{self.pod_ip}\t{self.pod['spec'].get('hostname') or self.name}"]
        aliases = self.spec.get("hostAliases") or []
        if aliases:
            lines.append("# Entries added by HostAliases.")
            lines += [f"{a['ip']}\t{' '.join(a.get('hostnames') or [])}" for a in aliases]
        _write_file(self.dir / "etc-hosts", ("\n".join(lines) + "\n").encode(), 0o644)

    def _mounts(self, container: dict) -> list[api_pb2.Mount]:
        read_only_kinds = ("secret", "configMap", "downwardAPI", "projected")
        kinds = {v["name"]: v for v in self.spec.get("volumes") or []}
        out = []
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in self.volumes:
                raise podspec.ConfigError(f"volume {mount['name']!r} of container "
                                          f"{container['name']!r} is not declared in the pod")
            host = self.volumes[mount["name"]]
            if mount.get("subPath"):
                host = host / mount["subPath"]
            forced = any(k in kinds[mount["name"]] for k in read_only_kinds)
            out.append(api_pb2.Mount(container_path=mount["mountPath"], host_path=str(host),
                                     readonly=bool(mount.get("readOnly")) or forced))
        hosts = self.dir / "etc-hosts"
        if hosts.exists() and all(m.container_path != "/etc/hosts" for m in out):
            out.append(api_pb2.Mount(container_path="/etc/hosts", host_path=str(hosts)))
        return out

    # ---- status ------------------------------------------------------------------------
    def status(self) -> dict:
        init = [s for s in self.slots if s.init]
        app = [s for s in self.slots if not s.init]
        initialized = all(s.done or (podspec.is_sidecar(s.spec) and s.container_id
                                     and s.terminated is None) for s in init)
        ready = initialized and all(s.ready for s in app) and all(
            s.ready for s in init if podspec.is_sidecar(s.spec))
        ts = self.start_time
        cond = [("PodScheduled", True), ("Initialized", initialized),
                ("ContainersReady", ready), ("Ready", ready)]
        conditions = [{"type": t, "status": "True" if ok else "False",
                       "lastTransitionTime": ts} for t, ok in cond]
        doc = {"phase": self.phase, "conditions": conditions, "hostIP": self.runner.host_ip,
               "startTime": ts, "qosClass": "BestEffort",
               "initContainerStatuses": [self._container_status(s) for s in init],
               "containerStatuses": [self._container_status(s) for s in app]}
        if self.pod_ip:
            doc["podIP"], doc["podIPs"] = self.pod_ip, [{"ip": self.pod_ip}]
        if self.error:
            doc["message"] = self.error
        return doc

    def _container_status(self, slot: Slot) -> dict:
        if slot.waiting is not None:
            state = {"waiting": {"reason": slot.waiting[0], "message": slot.waiting[1]}}
        elif slot.terminated is not None:
            state = {"terminated": slot.terminated}
        else:
            state = {"running": {"startedAt": slot.started_at}}
        doc = {"name": slot.spec["name"], "image": slot.spec.get("image", ""),
               "imageID": "", "ready": slot.ready, "restartCount": slot.restarts,
               "started": bool(slot.container_id) and slot.terminated is None, "state": state,
               "lastState": {"terminated": slot.last_terminated} if slot.last_terminated
               else {}}
        if slot.container_id:
            doc["containerID"] = f"containerd://{slot.container_id}"
        return doc

    def _write_status(self) -> None:
        doc = self.status()
        if doc == self._last_status:
            return
        try:
            current = self.runner.server.store.get("pods", self.name, namespace=self.namespace)
            if current["metadata"]["uid"] != self.uid:
                return
            self.runner.server.store.patch("pods", self.name, {"status": doc},
                                           namespace=self.namespace, subresource="status")
            self._last_status = doc
        except errors.ApiError:
            pass  # deleted meanwhile: the runner stops this worker


def host_path(source: dict, volume: str) -> pathlib.Path:
    """A hostPath volume's path, checked against its `type` as kubelet checks it."""
    path, kind = pathlib.Path(source["path"]), source.get("type") or ""
    checks = {"Directory": path.is_dir, "File": path.is_file, "Socket": path.is_socket,
              "CharDevice": path.is_char_device, "BlockDevice": path.is_block_device}
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif kind in checks and not checks[kind]():
        raise podspec.ConfigError(f"hostPath type check failed: {path} is not a "
                                  f"{kind.lower()} (volume {volume!r})")
    return path


def _write_file(path: pathlib.Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class Projector(kubelet.TokenProjector):
    """TokenProjector for one volume at a time, token files owned by the pod's user."""

    def project_volume(self, pod: dict, volume: dict, *, owner: int | None) -> None:
        meta = pod["metadata"]
        directory = self.root / meta["namespace"] / meta["name"] / volume["name"]
        for source in volume["projected"].get("sources") or []:
            sat = source.get("serviceAccountToken")
            if not sat:
                continue
            request = {"spec": {
                "audiences": [sat["audience"]] if sat.get("audience") else [],
                "expirationSeconds": sat.get("expirationSeconds") or 3600,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"],
                                   "uid": meta["uid"]}}}
            entry = kubelet._Projected(meta["namespace"], meta["name"],
                                       directory / sat["path"], request, owner=owner)
            self._write(entry)
            self._files.append(entry)

    def forget(self, namespace: str, name: str) -> None:
        self._files = [f for f in self._files if (f.namespace, f.pod) != (namespace, name)]


class PodRunner:
    """kubelet for one fixture node: runs every pod bound to it on the given containerd."""

    def __init__(self, server, containerd, node: str, root: str | os.PathLike, *,
                 interval: float = 0.2, backoff: float = 0.5, host_ip: str = "127.0.0.1"):
        self.server = server
        self.containerd = containerd
        self.node = node
        self.root = pathlib.Path(root) / f"kubelet-{node}"
        self.interval = interval
        self.backoff = backoff
        self.host_ip = host_ip
        self.api_host = "127.0.0.1"
        self.projector = Projector(server, self.root / "projected")
        self.workers: dict[str, PodWorker] = {}
        self._images: dict[str, tuple[int | None, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"kubelet-{node}")

    def __enter__(self) -> PodRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        # Pods on this node get their status from here, not the fixture's inline controller.
        self.server.store.controller.kubelet_nodes.add(self.node)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for worker in list(self.workers.values()):
            worker.stop()
        for worker in list(self.workers.values()):
            worker.thread.join(timeout=120)
        self.workers.clear()
        self.server.store.controller.kubelet_nodes.discard(self.node)

    def worker(self, namespace: str, name: str) -> PodWorker:
        return next(w for w in self.workers.values()
                    if (w.namespace, w.name) == (namespace, name))

    def service_env(self) -> list[tuple[str, str]]:
        """The `kubernetes` service variables kubelet gives every container (the fixture's
        own address: reachable from hostNetwork pods, as the API listens on loopback)."""
        host, port = self.api_host, str(self.server.port)
        url = f"tcp://{host}:{port}"
        return [("KUBERNETES_SERVICE_HOST", host), ("KUBERNETES_SERVICE_PORT", port),
                ("KUBERNETES_SERVICE_PORT_HTTPS", port), ("KUBERNETES_PORT", url),
                (f"KUBERNETES_PORT_{port}_TCP", url)]

    def image_user(self, image: str) -> tuple[int | None, str] | None:
        """(uid, username) the image runs as, from CRI ImageStatus; None when absent."""
        if image not in self._images:
            reply = self.containerd.images_service.ImageStatus(api_pb2.ImageStatusRequest(
                image=api_pb2.ImageSpec(image=image)), timeout=10).image
            if not reply.id:
                return None
            uid = reply.uid.value if reply.HasField("uid") else None
            self._images[image] = (uid, reply.username)
        return self._images[image]

    def _loop(self) -> None:
        last_refresh = 0.0
        while not self._stop.is_set():
            try:
                self._sync()
                if time.monotonic() - last_refresh > 1.0:
                    self.projector.refresh()
                    last_refresh = time.monotonic()
            except Exception:  # noqa: BLE001 - keep the node alive; the log says why
                log.exception("pod runner for %s", self.node)
            self._stop.wait(self.interval)

    def _sync(self) -> None:
        pods = self.server.store.list("pods", field_selector=f"spec.nodeName={self.node}")
        seen = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            if uid not in self.workers and not pod["metadata"].get("deletionTimestamp"):
                worker = PodWorker(self, pod)
                self.workers[uid] = worker
                worker.thread.start()
        for uid in list(self.workers):
            if uid not in seen:
                worker = self.workers.pop(uid)
                self.projector.forget(worker.namespace, worker.name)
                worker.stop()
