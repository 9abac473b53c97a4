"""Fixtures: the Kubernetes API server fixture, a real colony process, DaemonSet agent processes.

COMPONENT TEST, NOT AN E2E (issue 14): `NodeAgentProc` runs `coral agent node` from this
checkout as a plain process on this machine (named shortcut: no pod, no image), to test the
node agent's watch, discovery, overrides and CRI exec in depth. The DaemonSet as Kubernetes
runs it (the image, the pod runner, the shipped RBAC) is tests/kube_e2e/test_daemonset.py."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import yaml

from coral_lib.colony import discovery_record
from tests.support import coral_procs, kube_identity
from tests.support.kubeapi import KubeAPIServer

NODES = ("node-a", "node-b", "node-c")


def pod(name: str, *, namespace: str = "shop", node: str = "node-a", port: int = 8080,
        labels: dict | None = None, annotations: dict | None = None, phase: str | None = None,
        containers: list[dict] | None = None, owner: dict | None = None) -> dict:
    """A pod body as a user (or a controller) would create it."""
    meta: dict = {"name": name, "namespace": namespace,
                  "labels": {"app": name} if labels is None else labels}
    if annotations:
        meta["annotations"] = annotations
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "controller": True, "uid": "u-1",
                                    **owner}]
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {
        "nodeName": node,
        "containers": containers or [{"name": "app", "image": "docker.io/local/busybox",
                                      "ports": [{"containerPort": port, "name": "http"}]}]}}
    if phase:
        body["status"] = {"phase": phase}
    return body


def namespace(server: KubeAPIServer, name: str) -> None:
    server.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


@pytest.fixture
def kubeapi(tmp_path):
    """The API server fixture with three nodes, quick bookmarks and namespace "shop"."""
    with KubeAPIServer(tmp_path / "kubeapi", nodes=NODES, bookmark_interval=0.2) as server:
        namespace(server, "shop")
        yield server


@pytest.fixture
def colony_args(tmp_path, kubeapi):
    """The root `colony` checks the node agents' service account tokens on the fixture."""
    kubeconfig = kube_identity.colony_kubeconfig(kubeapi, tmp_path / "colony-kubeconfig")
    return ("--token-review-kubeconfig", kubeconfig)


class NodeAgentProc:
    """A real `coral agent node` process (run as `python -m coral_lib.commands.agent_node`
    until `coral agent` registers the verb)."""

    def __init__(self, work_dir: pathlib.Path, colony: coral_procs.Colony, *, node: str,
                 kubeapi: KubeAPIServer, extra: dict | None = None,
                 flags: list[str] | None = None) -> None:
        # The colony derives the id from the pod-bound token: node-<node>.
        self.node, self.agent_id = node, f"node-{node}"
        self.work_dir = work_dir
        self.config_path = work_dir / f"{self.agent_id}.yaml"
        self.log_path = work_dir / f"{self.agent_id}.log"
        self.state_dir = work_dir / f"{self.agent_id}-state"
        body = {"agent": {"id": self.agent_id, "runtime": "daemonset"},
                "colony": {"address": colony.address, "caFile": str(colony.data_dir / "ca.crt"),
                           "id": colony.colony_id,
                           "serviceAccountTokenFile": str(kube_identity.node_agent_token(
                               kubeapi, node, work_dir / f"{self.agent_id}.token"))},
                "discovery": {"kubernetes": {"resyncInterval": "5m"}},
                **(extra or {})}
        work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(body))
        self.argv = [sys.executable, "-m", "coral_lib.commands.agent_node",
                     "--config", str(self.config_path), "--kubeconfig", kubeapi.kubeconfig_path,
                     "--node-name", node, "--state-dir", str(self.state_dir), *(flags or [])]
        self.proc: subprocess.Popen | None = None

    def start(self) -> NodeAgentProc:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        coral_procs.stop_process(self.proc)


@pytest.fixture
def node_agents(tmp_path, colony, kubeapi):
    """Start DaemonSet agent processes on demand: `node_agents("node-a", flags=[...])`."""
    started: list[NodeAgentProc] = []

    def start(node: str, **kwargs) -> NodeAgentProc:
        agent = NodeAgentProc(tmp_path / "agents", colony, node=node, kubeapi=kubeapi,
                              **kwargs).start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def registry(colony: coral_procs.Colony, **filters) -> list[dict]:
    with colony.client() as c:
        return c.list_services(**filters)


def added_counts(colony: coral_procs.Colony) -> dict[tuple[str, str], int]:
    """How often the colony's audit says each (agent, service key) was added."""
    with colony.client() as c:
        rows = c.audit(kind="discovery", limit=100_000)
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        for event, key in discovery_record.events(row):
            if event == "added":
                counts[(row["agent_id"], key)] = counts.get((row["agent_id"], key), 0) + 1
    return counts
