"""Fixtures: API server fixtures as clusters, real `ansible-playbook` runs against them.

COMPONENT TEST where agents appear (issue 14): `NodeAgent` runs `coral agent node` as a
plain process standing in for a DaemonSet pod (named shortcut), so the multi-cluster
rollout logic is tested without a container runtime per cluster; the rollout with agent
pods from the image is tests/kube_e2e/test_rollout.py.

Each playbook run is a real ansible-playbook process using the repository's ansible.cfg
(the working tree is the coral.mesh collection) and the virtualenv's Python for the
modules (coral-lib + the kubernetes client).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from tests.support import coral_procs, kube_identity
from tests.support.kubeapi import KubeAPIServer, errors

REPO = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = str(REPO / ".venv" / "bin" / "ansible-playbook")
PYTHON = sys.executable
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                    re.MULTILINE)


@dataclasses.dataclass
class Run:
    rc: int
    output: str
    recap: dict[str, dict[str, int]]

    @property
    def changed(self) -> int:
        return sum(host["changed"] for host in self.recap.values())

    def explain(self) -> str:
        return self.output[-6000:]


def run_playbook(playbook: str, *, extra_vars: dict, check: bool = False,
                 inventory: str | None = None, env: dict | None = None,
                 timeout: float = 240) -> Run:
    """`ansible-playbook playbooks/<playbook>` as a user runs it; vars go in as JSON."""
    argv = [PLAYBOOK, str(REPO / "playbooks" / playbook), "-e", json.dumps(extra_vars)]
    if inventory:
        argv += ["-i", inventory]
    if check:
        argv.append("--check")
    run_env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
               "ANSIBLE_LOCALHOST_WARNING": "0", **(env or {})}
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=run_env)
    output = proc.stdout + proc.stderr
    recap = {m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]),
                    "failed": int(m[4])} for m in _RECAP.findall(output)}
    return Run(rc=proc.returncode, output=output, recap=recap)


def colony_vars(folder: pathlib.Path) -> dict:
    """The colony ConfigMap's inputs (a real colony is not needed to deploy)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return {"coral_k8s_colony_address": "coral-colony.example:9443",
            "coral_k8s_colony_ca_file": str(folder / "ca.crt"),
            "coral_k8s_colony_id": "colony-test"}


def create_namespace(server: KubeAPIServer, name: str) -> None:
    labels = {"kubernetes.io/metadata.name": name}
    server.store.create({"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": name, "labels": labels}})


def get(server: KubeAPIServer, resource: str, name: str, namespace: str | None = None
        ) -> dict | None:
    """One object straight from the fixture's store (no HTTP), or None when absent."""
    try:
        return server.store.get(resource, name, namespace=namespace)
    except errors.ApiError as exc:
        if exc.code == 404:
            return None
        raise


def names(server: KubeAPIServer, resource: str, namespace: str | None = None) -> set[str]:
    return {o["metadata"]["name"] for o in server.store.list(resource, namespace=namespace)}


def merge_kubeconfigs(paths: list[str], dest: pathlib.Path) -> str:
    """One kubeconfig with every fixture's context (a fleet operator's file)."""
    merged = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": [],
              "preferences": {}}
    for path in paths:
        cfg = yaml.safe_load(pathlib.Path(path).read_text())
        for key in ("clusters", "users", "contexts"):
            merged[key] += cfg[key]
        merged.setdefault("current-context", cfg["current-context"])
    dest.write_text(yaml.safe_dump(merged))
    dest.chmod(0o600)
    return str(dest)


@pytest.fixture
def cluster(tmp_path):
    """One fixture cluster with two nodes and an application namespace "shop"."""
    with KubeAPIServer(tmp_path / "kubeapi", nodes=["node-1", "node-2"],
                       context="fixture") as server:
        create_namespace(server, "shop")
        yield server


@pytest.fixture
def base_vars(tmp_path):
    return {"ansible_python_interpreter": PYTHON, **colony_vars(tmp_path / "colony-input")}


class NodeAgent:
    """A real DaemonSet agent process (`coral agent node`) for one fixture node: what the
    DaemonSet's pod would run there, registering with a real colony."""

    def __init__(self, work_dir: pathlib.Path, colony: coral_procs.Colony, *, node: str,
                 kubeapi: KubeAPIServer) -> None:
        # Its pod-bound token (the colony checks it with TokenReview) makes it node-<node>.
        self.agent_id = f"node-{node}"
        kubeconfig = kubeapi.kubeconfig_path
        work_dir.mkdir(parents=True, exist_ok=True)
        token = kube_identity.node_agent_token(kubeapi, node, work_dir / f"{self.agent_id}.token")
        config = work_dir / f"{self.agent_id}.yaml"
        config.write_text(yaml.safe_dump({
            "agent": {"id": self.agent_id, "runtime": "daemonset"},
            "colony": {"address": colony.address, "caFile": str(colony.data_dir / "ca.crt"),
                       "id": colony.colony_id, "serviceAccountTokenFile": str(token)},
            "discovery": {"kubernetes": {"resyncInterval": "5m"}}}))
        self.log_path = work_dir / f"{self.agent_id}.log"
        self.argv = [*coral_procs.CORAL, "agent", "node", "--config", str(config),
                     "--kubeconfig", kubeconfig, "--node-name", node,
                     "--state-dir", str(work_dir / f"{self.agent_id}-state")]
        self.proc: subprocess.Popen | None = None

    def start(self) -> NodeAgent:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        coral_procs.stop_process(self.proc)


def cluster_colony(work_dir: pathlib.Path, kubeapi: KubeAPIServer) -> coral_procs.Colony:
    """A colony for one cluster: it checks that cluster's agent tokens (TokenReview)."""
    kubeconfig = kube_identity.colony_kubeconfig(kubeapi, work_dir / "colony-kubeconfig")
    return coral_procs.Colony(work_dir / "colony",
                              args=("--token-review-kubeconfig", kubeconfig)).start()
