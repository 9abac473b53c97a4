"""Issue 14 §4: the Kubernetes modes end to end, agents running as pods from the project's
image (tests/support/image.py) on the private containerd, started by the pod runner from
objects in the API fixture under its RBAC, Pod Security and ServiceAccount admission; the
colony is a real process reviewing the agents' projected tokens with TokenReview. One
cluster (tests/support/kubecluster.py) and one image import per session."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from tests.ansible_k8s.conftest import PYTHON, run_playbook
from tests.cri.conftest import why_not_runnable
from tests.support.image import agent_image  # noqa: F401 - the session fixture
from tests.support.kubecluster import SYSTEM, KubeCluster


@pytest.fixture(scope="session")
def kube(tmp_path_factory, agent_image):  # noqa: F811 - pytest fixture injection
    reason = why_not_runnable()
    if reason:
        pytest.skip(f"containerd cannot run here: {reason}")
    with KubeCluster(tmp_path_factory.mktemp("e2e"), image=agent_image) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def cluster_colony(kube):
    """The cluster's colony: reviews agents' projected tokens through the fixture's
    TokenReview (not the root `colony` fixture, which runs without a cluster)."""
    return kube.start_colony()


def cluster_inventory(kube, colony, work: pathlib.Path) -> str:
    """An inventory with the fixture as one cluster, as a user writes it."""
    inventory = work / "clusters.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"coral_clusters": {
        "hosts": {"cluster-a": {
            "coral_k8s_kubeconfig": kube.server.kubeconfig_path,
            "coral_colony_address": colony.address,
            "coral_colony_ca_file": str(colony.data_dir / "ca.crt"),
            "coral_colony_token_file": str(colony.data_dir / "admin.token")}},
        "vars": {"ansible_connection": "local"}}}}}))
    return str(inventory)


def daemonset_vars(kube, colony, **settings) -> dict:
    """deploy-coral.yml / rollout-coral.yml variables for the DaemonSet mode on the fixture:
    this containerd's CRI socket, the agents' state in the cluster's own directory (the
    fixture's nodes share this machine's filesystem, not /var/lib/coral/agent)."""
    return {"ansible_python_interpreter": PYTHON, "coral_mode": "daemonset",
            "coral_k8s_colony_address": colony.address,
            "coral_k8s_colony_ca_file": str(colony.data_dir / "ca.crt"),
            "coral_k8s_colony_id": colony.colony_id,
            "coral_daemonset_settings": {"cri_socket": kube.runtime.socket,
                                         "state_host_path": str(kube.base / "agent-state"),
                                         **settings},
            "coral_daemonset_wait_timeout": 60}


def deploy_daemonset_with_ansible(kube, colony, work: pathlib.Path) -> tuple[str, dict]:
    """`ansible-playbook playbooks/deploy-coral.yml -e coral_mode=daemonset` against the
    fixture (replacing a DaemonSet another e2e test deployed); returns (inventory, vars).

    FIXTURE NOTE (tests/support/kubecluster.py): the agents reach the loopback colony and
    API with hostNetwork, set outside the applied manifest so later applies keep it."""
    server = kube.server
    if server.store.list("daemonsets", namespace=SYSTEM):
        server.store.delete("daemonsets", "coral-agent", namespace=SYSTEM)
    inventory, ev = cluster_inventory(kube, colony, work), daemonset_vars(kube, colony)
    run = run_playbook("deploy-coral.yml", inventory=inventory,
                       extra_vars={**ev, "coral_hosts": "coral_clusters",
                                   "coral_daemonset_wait": False})
    assert run.rc == 0, run.explain()
    server.store.patch("daemonsets", "coral-agent", {"spec": {"template": {"spec": {
        "hostNetwork": True}}}}, namespace=SYSTEM)
    return inventory, ev


def deploy_webhook_with_ansible(kube, colony, work: pathlib.Path, *,
                                inject_namespaces: list[str]) -> None:
    """`ansible-playbook playbooks/deploy-coral.yml -e coral_mode=webhook` against the
    fixture: the webhook Deployment from the image, its Service and registration, the
    namespaces labelled for injection with the colony ConfigMap.

    FIXTURE NOTE (tests/support/kubecluster.py): the webhook reads namespace labels from the
    loopback API fixture, so its one replica then runs with hostNetwork on a free port
    (kube.host_network_webhook). The sidecars stay on the pod network: the colony
    ConfigMap names the colony as pods reach it (kube.colony_for_pods)."""
    inventory = cluster_inventory(kube, colony, work)
    run = run_playbook("deploy-coral.yml", inventory=inventory, extra_vars={
        "ansible_python_interpreter": PYTHON, "coral_mode": "webhook",
        "coral_hosts": "coral_clusters",
        "coral_k8s_colony_address": kube.colony_for_pods(colony),
        "coral_k8s_colony_ca_file": str(colony.data_dir / "ca.crt"),
        "coral_k8s_colony_id": colony.colony_id,
        "coral_webhook_replicas": 1, "coral_webhook_wait": False,
        "coral_webhook_inject_namespaces": inject_namespaces})
    assert run.rc == 0, run.explain()
    kube.host_network_webhook()
