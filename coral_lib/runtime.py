"""Runtime detection: where the agent runs and what it can do there.

`collect()` reads the signals (I/O at the edge); `decide()` is a pure function from
those signals to a RuntimeContext; `detect()` is both in one call.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import re
import socket
from collections.abc import Mapping, Sequence

from coral_lib import capabilities

log = logging.getLogger(__name__)

DEFAULT_SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_CRI_SOCKETS = (
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/var/run/crio/crio.sock",
    "/run/cri-dockerd.sock",
    "/var/run/cri-dockerd.sock",
    "/run/docker.sock",
    "/var/run/docker.sock",
)
PAUSE_NAMES = frozenset({"pause"})


class Mode(enum.IntEnum):
    """Numbers match agent.proto RuntimeMode."""

    UNKNOWN = 0
    NATIVE = 1
    CONTAINER = 2
    K8S_DAEMONSET = 3
    K8S_SIDECAR = 4


class Visibility(enum.Enum):
    HOST = "host"
    OWN_POD = "own_pod"
    ALL_NODE_PODS = "all_node_pods"


class ExecBackendKind(enum.Enum):
    LOCAL = "local"
    NSENTER = "nsenter"
    CRI = "cri"
    CHROOT = "chroot"  # sidecar: /proc/<pid>/root as the app's user (ops/chroot.py)


FORCED_MODES = {"daemonset": Mode.K8S_DAEMONSET, "sidecar": Mode.K8S_SIDECAR, "host": Mode.NATIVE}

# --- pure parsers -------------------------------------------------------------------------

_SCOPE_ID = re.compile(r"(?:cri-containerd|containerd|crio|docker|libpod)-([0-9a-f]{64})\.scope")
_BARE_ID = re.compile(r"/([0-9a-f]{64})(?=/|$)", re.M)
_ANY_ID = re.compile(r"[0-9a-f]{64}")
_POD_UID = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)


def _cgroup_paths(text: str) -> list[str]:
    """The path of each `hierarchy:controllers:path` line, in file order."""
    return [line.split(":", 2)[2] for line in text.splitlines() if line.count(":") >= 2]


def container_id_from_cgroup(text: str) -> str | None:
    """The container id in a /proc/<pid>/cgroup file (v1 or v2), or None.

    Understands containerd (`cri-containerd-<id>.scope`, `/kubepods/.../<id>`,
    `/k8s.io/<id>`), CRI-O (`crio-<id>.scope`), docker (`docker-<id>.scope`,
    `/docker/<id>`) and podman; `crio-conmon-<id>` (the monitor) does not count.
    The lines of one file agree, so the whole text is searched at once (scan speed).
    """
    if not _ANY_ID.search(text):
        return None
    found = _SCOPE_ID.findall(text) or _BARE_ID.findall(text)
    return found[-1] if found else None  # the deepest: a container nested in a sandbox


def pod_uid_from_cgroup(text: str) -> str | None:
    """The pod uid (dashed form) in a cgroup file: `pod<uid>` or systemd's `pod<uid_with_>`."""
    for path in _cgroup_paths(text):
        match = _POD_UID.search(path)
        if match:
            return match.group(1).replace("_", "-")
    return None


def is_pause(cmdline: Sequence[str]) -> bool:
    return bool(cmdline) and os.path.basename(cmdline[0]) in PAUSE_NAMES


# --- signals (collected at the edge) -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Signals:
    """Everything detection looks at, as plain data."""

    sa_dir_present: bool = False
    kubernetes_service_host: str = ""
    forced_mode: str = ""  # raw CORAL_AGENT_MODE
    self_container_id: str | None = None
    self_pod_uid: str | None = None
    pid1_cmdline: tuple[str, ...] = ()
    pid1_container_id: str | None = None
    pid1_shares_self_mntns: bool = False
    other_containers: int = 0  # distinct containers visible besides ours and the pause
    visible_pod_uids: frozenset[str] = frozenset()
    cap_eff: int = 0
    cri_sockets: tuple[str, ...] = ()  # the ones that exist
    cgroup_version: int = 0
    pod_name: str = ""
    pod_namespace: str = ""
    pod_uid: str = ""
    node_name: str = ""
    hostname: str = ""

    @property
    def in_kubernetes(self) -> bool:
        return self.sa_dir_present or bool(self.kubernetes_service_host)

    @property
    def in_container(self) -> bool:
        return self.in_kubernetes or self.self_container_id is not None

    @property
    def pid1_is_pause(self) -> bool:
        return is_pause(self.pid1_cmdline)

    @property
    def host_pid(self) -> bool:
        """PID 1 is the host's init: not a pause, not in a container, not our own entrypoint."""
        if self.pid1_is_pause or self.pid1_container_id is not None:
            return False
        return not (self.in_container and self.pid1_shares_self_mntns)

    @property
    def shared_pid_ns(self) -> bool:
        """A pod PID namespace shared by its containers (shareProcessNamespace)."""
        return self.pid1_is_pause or self.other_containers > 0


# --- the decision (pure) -------------------------------------------------------------------


@dataclasses.dataclass
class RuntimeContext:
    mode: Mode
    visibility: Visibility
    exec_backend: ExecBackendKind
    can_exec: bool
    can_shell: bool
    can_tap: bool
    can_trace: bool
    exec_reason: str = ""
    shell_reason: str = ""
    tap_reason: str = ""
    trace_reason: str = ""
    capabilities: list[str] = dataclasses.field(default_factory=list)
    cri_socket: str = ""
    cgroup_version: int = 0
    pod_name: str = ""
    pod_namespace: str = ""
    pod_uid: str = ""
    node_name: str = ""
    hostname: str = ""
    container_id: str = ""
    forced: bool = False
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["mode"] = self.mode.name
        data["visibility"] = self.visibility.value
        data["exec_backend"] = self.exec_backend.value
        return data

    def details(self) -> dict[str, str]:
        """The extra facts as strings (agent.proto RuntimeContext.details)."""
        return {
            "container_id": self.container_id, "cri_socket": self.cri_socket,
            "cgroup_version": str(self.cgroup_version), "forced": str(self.forced).lower(),
            "capabilities": ",".join(self.capabilities),
        }


def observed_mode(sig: Signals) -> Mode:
    if sig.in_kubernetes:
        return Mode.K8S_DAEMONSET if sig.host_pid else Mode.K8S_SIDECAR
    return Mode.CONTAINER if sig.in_container else Mode.NATIVE


def disagreements(sig: Signals, mode: Mode) -> list[str]:
    """What the signals say against running in `mode` (empty when they agree)."""
    out = []
    k8s_seen = ("service account dir present" if sig.sa_dir_present
                else f"KUBERNETES_SERVICE_HOST={sig.kubernetes_service_host}")
    if mode in (Mode.K8S_DAEMONSET, Mode.K8S_SIDECAR) and not sig.in_kubernetes:
        out.append("no service account dir and KUBERNETES_SERVICE_HOST unset: not in a pod")
    if mode is Mode.K8S_DAEMONSET and not sig.host_pid:
        who = "a pause process" if sig.pid1_is_pause else "a container process"
        out.append(f"PID 1 is {who}, not the host's init: hostPID is not enabled")
    if mode is Mode.K8S_SIDECAR and sig.host_pid and sig.in_kubernetes:
        out.append("PID 1 is the host's init: hostPID is enabled, this looks like a DaemonSet")
    elif mode is Mode.K8S_SIDECAR and not sig.shared_pid_ns:
        out.append("PID 1 is not a pause process and no other container is visible:"
                   " no shared PID namespace (shareProcessNamespace: true)")
    if mode is Mode.NATIVE and sig.in_kubernetes:
        out.append(f"{k8s_seen}: this looks like a Kubernetes pod")
    elif mode is Mode.NATIVE and sig.self_container_id:
        out.append(f"own cgroup names container {sig.self_container_id[:12]}: not a host")
    return out


def _caps(sig: Signals, mode: Mode) -> dict:
    cap = sig.cap_eff
    ns_missing = capabilities.missing(cap, ("CAP_SYS_ADMIN", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE"))
    ns_reason = f"namespace entry needs {', '.join(ns_missing)}" if ns_missing else ""
    out: dict = {}
    if mode in (Mode.NATIVE, Mode.CONTAINER):
        out.update(exec_backend=ExecBackendKind.LOCAL, exec_reason="", shell_reason="")
    elif mode is Mode.K8S_SIDECAR:
        # no namespace entry: chroot through /proc/<pid>/root as the app's own user
        chroot_missing = capabilities.missing(cap, ("CAP_SETUID", "CAP_SETGID", "CAP_SYS_CHROOT"))
        reason = (f"entering the app's filesystem needs {', '.join(chroot_missing)}"
                  if chroot_missing else "")
        reason = reason or ("" if sig.shared_pid_ns else
                            "no other container of the pod is visible: enable"
                            " shareProcessNamespace")
        out.update(exec_backend=ExecBackendKind.CHROOT, exec_reason=reason, shell_reason=reason)
    else:
        cri = bool(sig.cri_sockets)
        out.update(exec_backend=ExecBackendKind.CRI if cri else ExecBackendKind.NSENTER,
                   exec_reason="" if cri else ns_reason, shell_reason=ns_reason)
    tap_needs = ["CAP_NET_RAW"] + (["CAP_SYS_ADMIN"] if mode is Mode.K8S_DAEMONSET else [])
    tap_missing = capabilities.missing(cap, tap_needs)
    out["tap_reason"] = f"packet capture needs {', '.join(tap_missing)}" if tap_missing else ""
    bpf_ok = not capabilities.missing(cap, ("CAP_BPF", "CAP_PERFMON"))
    out["trace_reason"] = ("" if bpf_ok or capabilities.has(cap, "CAP_SYS_ADMIN")
                           else "eBPF tracing needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)")
    return out


def decide(sig: Signals) -> RuntimeContext:
    """The runtime context the signals describe, honouring CORAL_AGENT_MODE."""
    warnings: list[str] = []
    mode = observed_mode(sig)
    forced_raw = sig.forced_mode.strip().lower()
    forced = forced_raw in FORCED_MODES
    if forced:
        mode = FORCED_MODES[forced_raw]
        warnings += [f"CORAL_AGENT_MODE={forced_raw} but {why}" for why in disagreements(sig, mode)]
    elif forced_raw:
        warnings.append(f"CORAL_AGENT_MODE={sig.forced_mode!r} is not one of"
                        f" {', '.join(FORCED_MODES)}; ignored, detected {mode.name}")
    visibility = {Mode.K8S_DAEMONSET: Visibility.ALL_NODE_PODS,
                  Mode.K8S_SIDECAR: Visibility.OWN_POD}.get(mode, Visibility.HOST)
    caps = _caps(sig, mode)
    return RuntimeContext(
        mode=mode, visibility=visibility, exec_backend=caps["exec_backend"],
        can_exec=not caps["exec_reason"], exec_reason=caps["exec_reason"],
        can_shell=not caps["shell_reason"], shell_reason=caps["shell_reason"],
        can_tap=not caps["tap_reason"], tap_reason=caps["tap_reason"],
        can_trace=not caps["trace_reason"], trace_reason=caps["trace_reason"],
        capabilities=capabilities.names(sig.cap_eff),
        cri_socket=sig.cri_sockets[0] if sig.cri_sockets else "",
        cgroup_version=sig.cgroup_version, pod_name=sig.pod_name,
        pod_namespace=sig.pod_namespace, pod_uid=sig.pod_uid or (sig.self_pod_uid or ""),
        node_name=sig.node_name, hostname=sig.hostname,
        container_id=sig.self_container_id or "", forced=forced,
        warnings=warnings,
    )


# --- collection (I/O) ----------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def process_key(proc_root: str, pid: int | str) -> tuple[str | None, str]:
    """(container id or None, mount namespace link) of one process."""
    base = os.path.join(proc_root, str(pid))
    return container_id_from_cgroup(_read(base + "/cgroup")), _readlink(base + "/ns/mnt")


def _visible(proc_root: str) -> tuple[set[str], set[str]]:
    """Container keys (id, else mount ns) of all visible non-pause processes, and pod uids."""
    keys: set[str] = set()
    pods: set[str] = set()
    try:
        names = os.listdir(proc_root)
    except OSError:
        names = []  # no procfs: nothing visible, detection falls back on the other signals
    for name in names:
        if not name.isdigit():
            continue
        cgroup = _read(f"{proc_root}/{name}/cgroup")
        if not cgroup or is_pause(_read(f"{proc_root}/{name}/cmdline").split("\0")):
            continue
        cid = container_id_from_cgroup(cgroup)
        keys.add(cid or _readlink(f"{proc_root}/{name}/ns/mnt"))
        uid = pod_uid_from_cgroup(cgroup)
        if uid:
            pods.add(uid)
    return keys, pods


def collect(
    *,
    proc_root: str = "/proc",
    sys_root: str = "/sys",
    environ: Mapping[str, str] | None = None,
    sa_dir: str = DEFAULT_SA_DIR,
    cri_sockets: Sequence[str] = DEFAULT_CRI_SOCKETS,
    self_pid: int | None = None,
) -> Signals:
    env = os.environ if environ is None else environ
    me = str(self_pid) if self_pid else "self"
    self_cgroup = _read(f"{proc_root}/{me}/cgroup")
    self_id, self_mnt = process_key(proc_root, me)
    pid1_id, pid1_mnt = process_key(proc_root, 1)
    keys, pods = _visible(proc_root)
    keys.discard(self_id or self_mnt)
    cgroup_root = os.path.join(sys_root, "fs/cgroup")
    v2_only = os.path.exists(os.path.join(cgroup_root, "cgroup.controllers"))
    return Signals(
        sa_dir_present=os.path.isdir(sa_dir),
        kubernetes_service_host=env.get("KUBERNETES_SERVICE_HOST", ""),
        forced_mode=env.get("CORAL_AGENT_MODE", ""),
        self_container_id=self_id,
        self_pod_uid=pod_uid_from_cgroup(self_cgroup),
        pid1_cmdline=tuple(_read(f"{proc_root}/1/cmdline").rstrip("\0").split("\0")),
        pid1_container_id=pid1_id,
        pid1_shares_self_mntns=bool(pid1_mnt) and pid1_mnt == self_mnt,
        other_containers=len(keys),
        visible_pod_uids=frozenset(pods),
        cap_eff=capabilities.read_mask(proc_root=proc_root, pid=me),
        cri_sockets=tuple(path for path in cri_sockets if os.path.exists(path)),
        cgroup_version=2 if v2_only else (1 if os.path.isdir(cgroup_root) else 0),
        pod_name=env.get("POD_NAME", ""), pod_namespace=env.get("POD_NAMESPACE", ""),
        pod_uid=env.get("POD_UID", ""), node_name=env.get("NODE_NAME", ""),
        hostname=socket.gethostname(),
    )


def detect(
    *,
    proc_root: str = "/proc",
    sys_root: str = "/sys",
    environ: Mapping[str, str] | None = None,
    sa_dir: str = DEFAULT_SA_DIR,
    cri_sockets: Sequence[str] = DEFAULT_CRI_SOCKETS,
    self_pid: int | None = None,
) -> RuntimeContext:
    """Collect the signals of this process and decide its runtime context."""
    ctx = decide(collect(proc_root=proc_root, sys_root=sys_root, environ=environ, sa_dir=sa_dir,
                         cri_sockets=cri_sockets, self_pid=self_pid))
    for warning in ctx.warnings:
        log.warning("runtime detection: %s", warning)
    return ctx
