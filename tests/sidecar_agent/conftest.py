"""A real pod (namespaces + containerd-style cgroups) with the Coral agent as its sidecar.

The agent joins the pod's PID, network, UTS and IPC namespaces and gets its own mount
namespace and cgroup, like a native sidecar with shareProcessNamespace (so tap captures the
pod's own interfaces, as in a real pod). It reaches the test colony on this machine's
loopback through the harness relay (podharness.Pod.relay_to_host, a named shortcut for
the pod network).

COMPONENT TEST, NOT AN E2E (issue 14): this harness runs the agent from this checkout as
a plain process placed in the pod's namespaces by hand, with root's full capability set.
The sidecar as Kubernetes runs it (the project's image, the webhook's injected
securityContext, the pod runner on containerd) is tested end to end in
tests/kube_e2e/test_webhook.py and tests/image/test_sidecar_least_privilege.py.
"""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest
import yaml

from tests.sidecar.conftest import why_not_runnable
from tests.support import coral_procs, kube_identity, podharness
from tests.support.kubeapi import KubeAPIServer

SETUP = 'set -e; echo $$ > "$1/cgroup.procs"; mount -t proc proc /proc; shift; exec "$@"'


class SidecarAgent:
    """The sidecar proves who it is with its pod's token (the pod object lives in the API
    server fixture `kubeapi`); the colony derives its id, pod-<namespace>.<pod>."""

    def __init__(self, pod: podharness.Pod, colony: coral_procs.Colony, work,
                 kubeapi: KubeAPIServer) -> None:
        self.pod, self.colony = pod, colony
        self.agent_id = f"pod-{pod.namespace}.{pod.name}"
        token = kube_identity.pod_token(kubeapi, pod.namespace, pod.name, work / "token",
                                        node="node-1")
        self.config = work / "agent.yaml"
        self.log_path = work / "agent.log"
        self.config.write_text(yaml.safe_dump({
            "agent": {"id": self.agent_id},
            "colony": {"address": colony.address, "caFile": str(colony.data_dir / "ca.crt"),
                       "id": colony.colony_id, "serviceAccountTokenFile": str(token)},
            "discovery": {"host": {"pollInterval": "500ms"}},
        }))
        self.cgroup = os.path.join(pod.cgroup, secrets.token_hex(32))
        self.work = work
        self.extra_env: dict[str, str] = {}  # e.g. CORAL_POD_LABELS_FILE (downward API)
        # True keeps the agent in this machine's network namespace (a test whose point is
        # that the agent must enter the pod's to find something there)
        self.host_netns = False
        self.proc: subprocess.Popen | None = None

    def start(self) -> SidecarAgent:
        os.makedirs(self.cgroup, exist_ok=True)
        env = {**os.environ, "POD_NAME": self.pod.name, "POD_NAMESPACE": self.pod.namespace,
               "POD_UID": self.pod.uid, "NODE_NAME": "node-1", "CORAL_AGENT_MODE": "sidecar",
               "KUBERNETES_SERVICE_HOST": "10.0.0.1", **self.extra_env}
        if not self.host_netns:
            self.pod.relay_to_host(int(self.colony.address.rsplit(":", 1)[1]))
        namespaces = ["--pid", "--uts", "--ipc", *([] if self.host_netns else ["--net"])]
        argv = [*coral_procs.CORAL, "agent", "start", "--monitor-all", "--config",
                str(self.config), "--state-dir", str(self.work / "state"),
                "--socket", str(self.work / "agent.sock")]
        self.proc = subprocess.Popen(
            ["nsenter", f"--target={self.pod.pause_pid}", *namespaces, "--",
             "unshare", "--mount", "--propagation", "private", "--",
             "sh", "-c", SETUP, "sh", self.cgroup, *argv],
            stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        return self

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        coral_procs.stop_process(self.proc)
        podharness.kill_cgroup(self.cgroup)
        podharness.rmdir_cgroup(self.cgroup)


@pytest.fixture
def kubeapi(tmp_path):
    with KubeAPIServer(tmp_path / "kubeapi", nodes=["node-1"]) as server:
        yield server


@pytest.fixture
def colony_args(tmp_path, kubeapi):
    """The root `colony` checks the sidecar's pod-bound token on the fixture."""
    kubeconfig = kube_identity.colony_kubeconfig(kubeapi, tmp_path / "colony-kubeconfig")
    return ("--token-review-kubeconfig", kubeconfig)


@pytest.fixture
def shop(tmp_path, colony, kubeapi):
    reason = why_not_runnable()
    if reason:
        pytest.skip(reason)
    pod = podharness.Pod("shop-7d9f", "payments").start()
    agent = None
    try:
        pod.add_container("web", ["sh", "-c", "busybox httpd -f -p 8080 & wait"], port=8080,
                          env={"OTEL_SERVICE_NAME": "checkout"})
        pod.add_container("cache", ["python3", "-m", "http.server", "9090", "--bind",
                                    "127.0.0.1"], port=9090)
        pod.add_container("worker", ["sleep", "100000"])
        agent = SidecarAgent(pod, colony, tmp_path, kubeapi).start()
        coral_procs.wait_registered(colony, [agent.agent_id])
        yield pod, agent
    finally:
        if agent:
            agent.stop()
        pod.stop()
