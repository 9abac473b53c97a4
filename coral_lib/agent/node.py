"""The DaemonSet agent (`coral agent node`): every pod of one node, exec through CRI or nsenter.

Data flow: PodWatcher cache -> filters (selection.pod_decision) -> pods.candidates ->
overrides (annotations < config overrides[] then --override-file rules < explicit
services[]) -> the runner, which diffs against the last sent set. The watcher sets
`agent.wake` on every change, so a pod event reaches the colony without waiting a period.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import threading
from typing import TYPE_CHECKING

from coral_lib import convert, overrides, runtime, selection, service
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.agent import context, handlers, runner
from coral_lib.config import view
from coral_lib.discovery import kubeclient, kubernetes, pods
from coral_lib.ops import base, cri, nsenter

if TYPE_CHECKING:  # at run time cfg is a view.Section: the agent never loads pydantic
    from coral_lib import config

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class NodeOptions:
    """What `coral agent node` adds to the config file (flags)."""

    node_name: str = ""
    kubeconfig: str | None = None
    include_namespaces: tuple[str, ...] = ()
    exclude_namespaces: tuple[str, ...] = ()
    include_labels: dict[str, str] = dataclasses.field(default_factory=dict)
    exclude_labels: dict[str, str] = dataclasses.field(default_factory=dict)
    override_file: str | None = None
    cri_socket: str | None = None  # None: $CORAL_CRI_SOCKET, else the well-known sockets;
    # "": never CRI (nsenter)
    mode: str | None = None  # --mode passive|active: overrides agent.mode


def effective_filters(cfg: config.KubernetesDiscovery, opts: NodeOptions
                      ) -> config.KubernetesDiscovery:
    """Config filters plus flags: lists are joined, label pairs from flags win per key."""
    def joined(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a + b))

    return cfg.model_copy(update={
        "include_namespaces": joined(cfg.include_namespaces, opts.include_namespaces),
        "exclude_namespaces": joined(cfg.exclude_namespaces, opts.exclude_namespaces),
        "include_labels": {**cfg.include_labels, **opts.include_labels},
        "exclude_labels": {**cfg.exclude_labels, **opts.exclude_labels},
    })


def discovered(pod_list: list[dict], *, node_labels: dict[str, str],
               filters: config.KubernetesDiscovery) -> list[service.ServiceInfo]:
    """Pure: the candidates of every pod the filters include."""
    out: list[service.ServiceInfo] = []
    for pod in pod_list:
        meta = pod.get("metadata") or {}
        decision = selection.pod_decision(
            namespace=meta.get("namespace", ""), labels=meta.get("labels") or {},
            annotations=meta.get("annotations") or {}, filters=filters)
        if decision.included:
            out.extend(pods.candidates(pod, node_labels=node_labels))
    return out


def pod_refs(pod_list: list[dict], *, filters: config.KubernetesDiscovery
             ) -> list[mesh_pb2.PodRef]:
    """Pure: the running pods the filters include (a pending pod has no process to enter),
    sorted by namespace and name."""
    out = []
    for pod in pod_list:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        decision = selection.pod_decision(
            namespace=meta.get("namespace", ""), labels=meta.get("labels") or {},
            annotations=meta.get("annotations") or {}, filters=filters)
        running = (pod.get("status") or {}).get("phase") == "Running"
        if decision.included and running and pods.is_live(pod):
            out.append(mesh_pb2.PodRef(
                namespace=meta.get("namespace", ""), name=meta.get("name", ""),
                labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
                containers=[c.get("name", "") for c in spec.get("containers") or []]))
    return sorted(out, key=lambda p: (p.namespace, p.name))


def final_services(candidates: list[service.ServiceInfo], *, annotations: dict[str, dict],
                   rules: tuple[config.OverrideRule, ...],
                   explicit: tuple[config.ExplicitService, ...], node_name: str
                   ) -> list[service.ServiceInfo]:
    """Pure: candidates -> the final set, with each pod's annotations as the lowest layer."""
    def layer(candidate: service.ServiceInfo) -> overrides.Layer | None:
        found = annotations.get(f"{candidate.namespace}/{candidate.pod_name}")
        return overrides.annotation_layer(found) if found else None

    return overrides.apply(candidates, rules=rules, explicit=explicit,
                           annotation_layers=layer, node_name=node_name)


class NodeAgent(runner.Agent):
    """runner.Agent fed by a PodWatcher; until the first list it repeats what it last sent."""

    def __init__(self, cfg: config.AgentConfig, *, watcher: kubernetes.PodWatcher,
                 filters: config.KubernetesDiscovery, rules: tuple[config.OverrideRule, ...],
                 handlers_: handlers.Handlers, state_dir: pathlib.Path | None) -> None:
        super().__init__(cfg, discover=self._discover, handlers=handlers_,
                         node_name=watcher.node_name, state_dir=state_dir)
        self.watcher, self.filters, self.rules = watcher, filters, rules
        watcher.on_change = self.wake.set
        self._explained: set[str] = set()
        self.resolver: ExecResolver | None = None  # set by build(): health probes use it

    def pods(self) -> list[mesh_pb2.PodRef] | None:
        """Every live pod of the node the filters include, with or without a service, so
        `--pod`, `--namespace` and `--all` reach it; None until the first list."""
        if not self.watcher.synced.is_set():
            return None
        pod_list, _labels = self.watcher.snapshot()
        return pod_refs(pod_list, filters=self.filters)

    def node_labels(self) -> dict[str, str]:
        return self.watcher.snapshot()[1]

    def service_netns(self, svc: mesh_pb2.ServiceInfo) -> str:
        """A pod's service is probed in its container's network namespace, found as an
        exec target is (the pod must be in this node's watch cache)."""
        pid = self.resolver.pid_of(svc.namespace, svc.pod_name, svc.container_name)
        return f"{self.resolver.proc_root}/{pid}/ns/net"

    def poll_interval(self) -> float:
        """discovery.kubernetes.pollInterval: how often the pod set is re-checked and sent
        when no watch event woke the agent sooner."""
        return self.cfg.discovery.kubernetes.poll_interval

    def leaving(self) -> bool:
        """Leave the registry when the node is gone or being deleted. A rollout or a
        restart of the agent pod keeps the node registered (no drop and re-add of its
        services); an unreadable node keeps it too, and agentExpiry decides later."""
        try:
            found = self.watcher.api.read_node(self.node_name, timeout=5)
        except kubeclient.ApiError as exc:
            return exc.status == 404
        except Exception as exc:  # noqa: BLE001 - the API is unreachable: expiry decides
            log.warning("cannot read node %s at stop: %s", self.node_name, exc)
            return False
        return bool((found.get("metadata") or {}).get("deletionTimestamp"))

    def _discover(self) -> list[service.ServiceInfo]:
        pod_list, node_labels = self.watcher.snapshot()
        return discovered(pod_list, node_labels=node_labels, filters=self.filters)

    def current(self) -> list[mesh_pb2.ServiceInfo]:
        if not self.watcher.synced.is_set() and self._last_sent is not None:
            return self._last_sent
        pod_list, _labels = self.watcher.snapshot()
        notes = {pods.pod_key(p): (p.get("metadata") or {}).get("annotations") or {}
                 for p in pod_list}
        final = final_services(self._discover(), annotations=notes, rules=self.rules,
                               explicit=self.cfg.services, node_name=self.node_name)
        self._explain(final)
        return [convert.service_to_proto(r) for r in final]

    def discovery_complete(self) -> bool:
        return self.watcher.synced.is_set()

    def _explain(self, final: list[service.ServiceInfo]) -> None:
        """One logfmt line per overridden service, when it first appears or changes."""
        lines = {overrides.explain(r) for r in final
                 if r.provenance == service.Provenance.OVERRIDDEN}
        for line in sorted(lines - self._explained):
            log.info("service %s", line)
        self._explained = lines

    def run(self) -> None:
        thread = threading.Thread(target=self.watcher.run, args=(self.stop,),
                                  name="pod-watch", daemon=True)
        thread.start()
        try:
            super().run()
        finally:
            self.stop.set()


def build(cfg: config.AgentConfig, opts: NodeOptions, *,
          state_dir: pathlib.Path | None = None, api: object | None = None) -> NodeAgent:
    """The DaemonSet agent. Raises ConfigError (override file, missing node name)."""
    node_name = opts.node_name or os.environ.get("NODE_NAME", "")
    if not node_name:
        raise view.ConfigError("coral agent node", "--node-name",
                                 "no node name: pass --node-name or set NODE_NAME "
                                 "(the downward API's spec.nodeName)")
    rules = tuple(cfg.overrides)
    if opts.override_file:
        rules += view.load_override_file(opts.override_file)
    k8s = cfg.discovery.kubernetes
    watcher = kubernetes.PodWatcher(
        api or kubernetes.api_from(kubeconfig=opts.kubeconfig), node_name=node_name,
        resync_interval=k8s.resync_interval)
    given = opts.cri_socket if opts.cri_socket is not None else \
        os.environ.get("CORAL_CRI_SOCKET")
    resolver = ExecResolver(watcher, cri_socket=_cri_socket(given))
    if opts.mode:
        cfg = cfg.model_copy(update={"agent": cfg.agent.model_copy(update={"mode": opts.mode})})
    agent = NodeAgent(cfg, watcher=watcher, filters=effective_filters(k8s, opts), rules=rules,
                      state_dir=state_dir,
                      handlers_=handlers.Handlers(runtime=node_runtime(resolver.backend_name,
                                                                           node_name),
                                                  resolve=resolver))
    agent.resolver = resolver
    return agent


def _cri_socket(given: str | None) -> str:
    """The CRI socket to exec through: the one named (--cri-socket or CORAL_CRI_SOCKET),
    which must answer -- a named socket that does not is a configuration error, never a
    silent fallback to nsenter; "" names none (nsenter); None tries the well-known ones."""
    if given == "":
        return ""
    if given is not None:
        if not cri.probe(given):
            raise view.ConfigError("coral agent node", "--cri-socket / CORAL_CRI_SOCKET",
                                     f"no CRI runtime answers on {given}: mount the node's "
                                     "runtime socket there, or set it to '' to exec "
                                     "through nsenter")
        return given
    return next((p for p in cri.default_socket_paths() if cri.probe(p)), "")


class ExecResolver:
    """Resolver: CRI ExecSync when a CRI socket answered at start, else nsenter via /proc.

    Targets are resolved, never trusted: the pod must be in this node's watch cache; its
    container is found by exact name (CRI: kubelet's io.kubernetes labels; nsenter: the
    pod UID in /proc cgroups plus the pod's containerStatuses) and checked to belong to
    that pod (namespace, name and UID) before anything enters it. "Not found" and "not
    this pod's" give the same error, so failures reveal nothing about other pods.
    """

    def __init__(self, watcher: kubernetes.PodWatcher, *, cri_socket: str,
                 proc_root: str = "/proc") -> None:
        self.watcher, self.proc_root = watcher, proc_root
        self.cri = cri.CRIBackend(cri_socket) if cri_socket else None
        self.nsenter = nsenter.NsenterBackend(proc_root=proc_root)
        self.backend_name = "cri" if self.cri else "nsenter"

    def __call__(self, request: base.ExecRequest) -> tuple[base.ExecBackend, base.ExecRequest]:
        target = request.target
        if not target.pod_name or not target.namespace:
            # no "default" guess: the namespace RBAC judged is the one entered
            raise base.OperationError("this is a DaemonSet agent: name a pod and its "
                                      "namespace (--pod NAME -n NS)")
        namespace = target.namespace
        key = f"{namespace}/{target.pod_name}"
        with self.watcher.lock:
            pod = self.watcher.pods.get(key)
        if pod is None:
            raise base.OperationError(f"pod {key} is not on node {self.watcher.node_name}")
        target = dataclasses.replace(target, namespace=namespace, container_id="", pid=0)
        uid = (pod.get("metadata") or {}).get("uid", "")
        if self.cri is not None and not request.stdin:
            # ExecSync runs the command (it cannot carry stdin: those go through nsenter).
            # One ListContainers finds the container, and ExecSync runs in exactly that
            # one (cri.PinnedContainer): two CRI calls. The default container comes from
            # the pod in the watch cache; the pid (ContainerStatus) only for callers that
            # enter the container themselves.
            found = self.cri.resolve(target, pod_uid=uid,
                                     default_container=default_container(pod))
            check_belongs(found, namespace=namespace, pod_name=target.pod_name, pod_uid=uid)
            pid = self.cri.container_pid(found["id"]) if request.needs_pid else 0
            located = dataclasses.replace(
                target, container_name=found["name"], container_id=found["id"], pid=pid,
                resolved_by="cri")
            return self.cri.pinned(found["id"]), dataclasses.replace(request, target=located)
        found = self._container(pod, target)
        located = dataclasses.replace(
            target, container_name=found.name, container_id=found.container_id,
            pid=found.main_pid, resolved_by="pod-status")
        return self.nsenter, dataclasses.replace(request, target=located)

    def pid_of(self, namespace: str, pod_name: str, container_name: str) -> int:
        """The host pid of a container of a pod on this node (resolved as __call__ does);
        OperationError when it is not running here."""
        request = base.ExecRequest(argv=["true"], needs_pid=True, target=base.ExecTarget(
            namespace=namespace, pod_name=pod_name, container_name=container_name))
        _backend, located = self(request)
        if not located.target.pid:
            raise base.OperationError(f"no process of {namespace}/{pod_name}/{container_name}")
        return located.target.pid

    def _container(self, pod: dict, target: base.ExecTarget):
        containers = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
        wanted = target.container_name or (containers[:1] or [""])[0]
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        names = {str(s.get("containerID", "")).split("://", 1)[-1]: s.get("name", "")
                 for s in statuses if s.get("containerID")}
        return nsenter.find_pod_container(
            pod_uid=(pod.get("metadata") or {}).get("uid", ""), container_name=wanted,
            proc_root=self.proc_root, names=names)


def default_container(pod: dict) -> str:
    """Pure: the container `kubectl exec` picks when none is named (the pod's annotation;
    kubelet copies pod annotations to its sandbox, where CRI would read it), "" for none."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(cri.DEFAULT_CONTAINER_ANNOTATION, ""))


def check_belongs(container: dict, *, namespace: str, pod_name: str, pod_uid: str) -> None:
    """Pure: refuse a CRI container (see cri.describe) that is not the named pod's, with the
    same words as "no such container" so the error reveals nothing about other pods."""
    labels = container.get("labels") or {}
    ours = (labels.get(cri.POD_NAMESPACE_LABEL) == namespace
            and labels.get(cri.POD_NAME_LABEL) == pod_name
            and bool(pod_uid) and labels.get(cri.POD_UID_LABEL) == pod_uid)
    if not ours:
        raise base.OperationError(
            f"container {container.get('name', '')!r} not found in pod {namespace}/{pod_name}")


def node_runtime(backend: str, node_name: str = "") -> agent_pb2.RuntimeContext:
    """What runtime detection sees (capabilities, CRI socket, node), with the exec backend
    the resolver actually chose and the node the agent serves (--node-name wins)."""
    ctx = context.to_proto(runtime.detect(environ={**os.environ,
                                                    "CORAL_AGENT_MODE": "daemonset"}))
    ctx.exec_backend = backend
    ctx.node_name = node_name or ctx.node_name
    return ctx
