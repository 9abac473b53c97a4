"""A whole test cluster for end-to-end runs: containerd, the API fixture, kubelets, controllers.

`KubeCluster(tmp_dir, image=AgentImage)` starts a private containerd with pod networking
(the project's image imported when given), the API fixture with ServiceAccount admission,
a pod runner per node (tests/support/podrunner.py) and the live workload controllers.
`start_colony()` runs a real colony that reviews agents' projected tokens through the
fixture's TokenReview; `deploy_daemonset(colony)` applies the rendered DaemonSet manifests
(the shipped RBAC, the `privileged` namespace) with the colony ConfigMap. Used by
tests/kube_e2e and bench/bench_pod_memory.py.

FIXTURE NOTE: the API fixture and the colony listen on this machine's loopback, so agent
pods that must reach them run with hostNetwork (DaemonSet agents commonly do). Every
node shares this machine's network, so each node gets its own loopback address as its
node IP (node-a 127.0.0.1, node-b 127.0.0.2): hostNetwork pods of two nodes bind the
same port on their own podIP, as they would on two machines.
"""

from __future__ import annotations

import contextlib
import pathlib
import socket
import threading

from coral_lib import manifests
from tests.support import containerd, coral_procs, kube_identity, podharness, podrunner
from tests.support.kubeapi import KubeAPIServer, errors, resources, workloads

NODES = ("node-a", "node-b")
IP_FREEBIND = 15  # linux/in.h
SYSTEM = "coral-system"


class KubeCluster:
    def __init__(self, tmp_dir: str | pathlib.Path, *, image=None,
                 nodes: tuple[str, ...] = NODES) -> None:
        self.base = pathlib.Path(tmp_dir)
        self.image = image
        self.nodes = nodes
        self._stack = contextlib.ExitStack()
        self.runtime: containerd.Containerd | None = None
        self.server: KubeAPIServer | None = None
        self._relays: set[int] = set()

    def __enter__(self) -> KubeCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.runtime = self._stack.enter_context(
            containerd.Containerd(self.base / "cri", cni=True))
        if self.image is not None:
            self.image.import_into(self.runtime)
        self.server = self._stack.enter_context(
            KubeAPIServer(self.base / "api", nodes=list(self.nodes), bookmark_interval=0.2))
        self.server.store.service_accounts = True
        self.server.service_resolver = self.resolve_service
        self.server.runners = {}
        for index, node in enumerate(self.nodes):
            runner = podrunner.PodRunner(self.server, self.runtime, node, self.base / "api",
                                         host_ip=f"127.0.0.{index + 1}")
            runner.start()
            self._stack.callback(runner.stop)
            self.server.runners[node] = runner
        self.server.workloads = workloads.Workloads(self.server)
        self.server.workloads.start()
        self._stack.callback(self.server.workloads.stop)

    def close(self) -> None:
        self._stack.close()

    def start_colony(self) -> coral_procs.Colony:
        kubeconfig = kube_identity.colony_kubeconfig(self.server, self.base / "colony-kubeconfig")
        colony = coral_procs.Colony(self.base / "colony",
                                    args=("--token-review-kubeconfig", kubeconfig))
        colony.start()
        self._stack.callback(colony.stop)
        return colony

    def apply(self, objs: list[dict]) -> None:
        """Create each object as an admin would; an existing one is replaced."""
        for obj in objs:
            try:
                self.server.store.create(obj)
            except errors.ApiError as exc:
                if exc.code != 409:
                    raise
                plural = next(t.plural for t in resources.TYPES if t.kind == obj["kind"])
                existing = self.server.store.get(plural, obj["metadata"]["name"],
                                                 namespace=obj["metadata"].get("namespace"))
                meta = {**existing["metadata"], **obj["metadata"],
                        "resourceVersion": existing["metadata"]["resourceVersion"]}
                self.server.store.update({**obj, "metadata": meta})

    def deploy_daemonset(self, colony: coral_procs.Colony, *,
                         node_selector: dict[str, str] | None = None, **settings) -> list[dict]:
        """The rendered DaemonSet mode (CRI socket: this containerd's) plus the colony
        ConfigMap; the objects as applied. The agents' state directory (hostPath) is this
        cluster's own: the fixture's nodes share this machine's filesystem. node_selector
        limits the agents to matching nodes (as an admin's patch of the template would)."""
        settings.setdefault("state_host_path", str(self.base / "agent-state"))
        objs = manifests.render("daemonset", manifests.ManifestSettings(
            cri_socket=self.runtime.socket, **settings))
        for obj in objs:
            if obj["kind"] == "DaemonSet":
                obj["spec"]["template"]["spec"]["hostNetwork"] = True  # see the module note
                if node_selector:
                    obj["spec"]["template"]["spec"]["nodeSelector"] = dict(node_selector)
        config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "coral-colony", "namespace": SYSTEM},
                      "data": {"address": colony.address, "colony-id": colony.colony_id,
                               "ca.crt": (colony.data_dir / "ca.crt").read_text()}}
        self.apply(objs[:1] + [config_map] + objs[1:])
        return objs

    def resolve_service(self, namespace: str, name: str, port: int) -> str:
        """kube-proxy's part for admission calls: a ready endpoint of the Service."""
        svc = self.server.store.get("services", name, namespace=namespace)
        spec = svc.get("spec") or {}
        selector = ",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items())
        target = next((p.get("targetPort", p["port"]) for p in spec.get("ports") or []
                       if p["port"] == port), port)
        for pod in self.server.store.list("pods", namespace=namespace, label_selector=selector):
            if not workloads.is_ready(pod):
                continue
            ports = {p.get("name"): p["containerPort"] for c in pod["spec"]["containers"]
                     for p in c.get("ports") or []}
            number = ports.get(target, target) if isinstance(target, str) else target
            return f"https://{pod['status']['podIP']}:{number}"
        raise OSError(f"service {namespace}/{name} has no ready endpoints")

    def deploy_webhook(self) -> list[dict]:
        """The rendered webhook mode (fresh TLS), one replica on a free port on this
        machine's network (the API fixture is on loopback), injecting hostNetwork pods
        (`allow_host_network`, for the same reason). Returns the objects as applied."""
        from coral_lib.commands.manifests import load_or_generate_tls
        from coral_lib.manifests import settings as settings_mod
        free = coral_procs.free_port()
        values = settings_mod.parse_sets(["webhook_replicas=1", "allow_host_network=true"])
        objs = manifests.render("webhook", settings_mod.build(
            values, tls=load_or_generate_tls(None, values)))
        for obj in objs:
            if obj["kind"] == "Deployment":
                _host_network_webhook(obj, free)
        self.apply(objs)
        return objs

    def host_network_webhook(self, name: str = "coral-webhook") -> dict:
        """The webhook Deployment as applied (e.g. by the deploy playbook), changed as
        deploy_webhook changes it (hostNetwork, a free port; see its docstring)."""
        deployment = self.server.store.get("deployments", name, namespace=SYSTEM)
        _host_network_webhook(deployment, coral_procs.free_port())
        return self.server.store.update(deployment)

    def webhook_pods(self) -> list[dict]:
        return self.server.store.list("pods", namespace=SYSTEM,
                                      label_selector="app.kubernetes.io/name=coral-webhook")

    def colony_for_pods(self, colony: coral_procs.Colony) -> str:
        """The colony's address as pods on the pod network dial it: this machine's hostname
        (in the colony's certificate) and the colony's port. FIXTURE NOTE: the colony listens
        on loopback; a relay on the bridge's address (the pod network's gateway) forwards to
        it, and pods map the hostname to that address with hostAliases
        (`pod_host_aliases()`), where a cluster would have a Service name and DNS."""
        port = int(colony.address.rsplit(":", 1)[1])
        if port not in self._relays:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # the CNI plugin adds the bridge and its address with the first pod-network pod
            listener.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
            listener.bind((self.runtime.gateway, port))
            listener.listen(64)
            self._stack.callback(listener.close)
            self._relays.add(port)
            threading.Thread(target=podharness.relay_connections, args=(listener, port),
                             daemon=True, name=f"colony-relay-{port}").start()
        return f"{socket.gethostname()}:{port}"

    def pod_host_aliases(self) -> list[dict]:
        return [{"ip": self.runtime.gateway, "hostnames": [socket.gethostname()]}]

    def colony_config_map(self, colony: coral_procs.Colony, namespace: str) -> dict:
        return self.server.store.create({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "coral-colony", "namespace": namespace},
            "data": {"address": colony.address, "colony-id": colony.colony_id,
                     "ca.crt": (colony.data_dir / "ca.crt").read_text()}})

    def agent_pods(self) -> dict[str, dict]:
        """{node: DaemonSet agent pod}."""
        pods = self.server.store.list("pods", namespace=SYSTEM,
                                      label_selector="app.kubernetes.io/name=coral-agent")
        return {p["spec"]["nodeName"]: p for p in pods}

    def container_log(self, namespace: str, pod: str, container: str) -> str:
        """The container's CRI log (every attempt), as `kubectl logs` reads it on the node."""
        body = self.server.store.get("pods", pod, namespace=namespace)
        runner = self.server.runners[body["spec"]["nodeName"]]
        logs = runner.root / "pods" / body["metadata"]["uid"] / "logs" / container
        return "".join(p.read_text(errors="replace") for p in sorted(logs.glob("*.log")))

    def container_id(self, namespace: str, pod: str, container: str) -> str:
        body = self.server.store.get("pods", pod, namespace=namespace)
        for status in (body.get("status") or {}).get("containerStatuses") or []:
            if status["name"] == container and status.get("containerID"):
                return status["containerID"].split("://", 1)[1]
        raise LookupError(f"{namespace}/{pod} has no running container {container!r}")


def _host_network_webhook(deployment: dict, port: int) -> None:
    spec = deployment["spec"]["template"]["spec"]
    spec["hostNetwork"] = True
    container = spec["containers"][0]
    # each fixture node has its own loopback IP: the webhook binds its pod's
    container["command"] = [f"$(POD_IP):{port}" if a == "0.0.0.0:8443" else a
                            for a in container["command"]]
    container.setdefault("env", []).append(
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    container["ports"][0]["containerPort"] = port
