"""Issue 14 §4.1 "DaemonSet on two nodes under the shipped ClusterRole and a `privileged`
namespace: agents discover app pods; `coral exec/shell/tap --pod` work; removing a rule
from the ClusterRole makes the agent report `forbidden` (test sees it); killing the agent
container loses no services (state on a volume)" — deployed by `ansible-playbook
playbooks/deploy-coral.yml -e coral_mode=daemonset` against the fixture, the agents are the
project's image running as DaemonSet pods on the private containerd."""

from __future__ import annotations

import json
import re
import subprocess
import threading

from tests.kube_e2e.conftest import deploy_daemonset_with_ansible
from tests.support import coral_procs
from tests.support.coral_procs import wait_for
from tests.support.kubeapi import podsecurity
from tests.support.kubecluster import NODES, SYSTEM


def registry(colony) -> list[dict]:
    with colony.client() as c:
        return c.list_services()


def _ds_status(cluster) -> dict:
    return cluster.store.get("daemonsets", "coral-agent", namespace=SYSTEM).get("status") or {}


def _environ() -> dict[str, str]:
    import os
    return dict(os.environ)


def _attempt_log(kube, pod: str, attempt: int) -> str:
    """The CRI log of one attempt (restart) of the agent container."""
    body = kube.server.store.get("pods", pod, namespace=SYSTEM)
    runner = kube.server.runners[body["spec"]["nodeName"]]
    logs = runner.root / "pods" / body["metadata"]["uid"] / "logs" / "coral-agent"
    return (logs / f"{attempt}.log").read_text(errors="replace")


def _agents(colony) -> list[dict]:
    with colony.client() as c:
        return c.list_agents()


def _ready_agents(cluster) -> tuple[int, int]:
    status = cluster.store.get("daemonsets", "coral-agent", namespace=SYSTEM)["status"]
    return status.get("desiredNumberScheduled", 0), status.get("numberReady", 0)


# The app serves HTTP on 8080 in its own pod network namespace and requests itself, so a
# capture there has traffic to see.
APP = ("echo in-app > /tmp/marker; httpd -p 8080 -h /tmp; "
       "while :; do wget -q -O /dev/null http://127.0.0.1:8080/marker; sleep 0.3; done")


def test_e2e_daemonset_agents_discover_pods_exec_shell_tap_and_report_forbidden(
        kube, cluster_colony, tmp_path):
    colony = cluster_colony
    cluster = kube.server
    deploy_daemonset_with_ansible(kube, colony, tmp_path)
    namespace = cluster.store.get("namespaces", SYSTEM)
    assert namespace["metadata"]["labels"][podsecurity.LABEL] == "privileged"
    assert cluster.store.get("clusterroles", "coral-agent")["rules"] == [
        {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]
    cluster.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    cluster.store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "web", "namespace": "shop", "labels": {"app": "web"}}, "spec": {
        "nodeName": "node-a", "containers": [{
            "name": "app", "image": "docker.io/local/busybox:latest",
            "ports": [{"containerPort": 8080, "name": "http"}],
            "command": ["sh", "-c", APP]}]}})

    def explain() -> str:
        out = []
        for node, p in kube.agent_pods().items():
            log = kube.container_log(SYSTEM, p["metadata"]["name"], "coral-agent")
            out.append(f"{node}: {json.dumps(p.get('status'))[:600]}\n{log[-1500:]}")
        return "\n".join(out)

    try:
        coral_procs.wait_registered(colony, [f"node-{n}" for n in NODES], timeout=90)
        wait_for(lambda: any(s["pod_name"] == "web" for s in registry(colony)), timeout=60,
                 what="pod web discovered")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{explain()}") from None
    (web,) = [s for s in registry(colony) if s["pod_name"] == "web"]
    assert web["agent"] == "node-node-a" and web["namespace"] == "shop"
    # Ready comes from the agents' /readyz probe (issue 13: linked, registered, pods listed)
    wait_for(lambda: _ready_agents(cluster) == (2, 2), timeout=60, what="2 of 2 agents ready")

    run = coral_procs.coral("exec", "--pod", "web", "-n", "shop", "-o", "json", "--",
                            "cat", "/tmp/marker", env=colony.operator_env)
    assert run.stdout, run.stderr
    (result,) = json.loads(run.stdout)["results"]
    assert (result["agent"], result["rc"], result["stdout"]) == ("node-node-a", 0, "in-app\n"), \
        (result, explain())

    # coral shell --pod: a PTY in the app container through the image-run agent (CRI exec).
    shell = subprocess.run(
        [*coral_procs.CORAL, "shell", "--pod", "web", "-n", "shop", "--",
         "sh", "-c", "cat /tmp/marker; exit 7"], stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60, env={**_environ(), **colony.operator_env})
    assert shell.returncode == 7 and "in-app" in shell.stdout, (shell, explain())

    # coral tap --pod: the agent captures in the app pod's own network namespace.
    pcap = tmp_path / "web.pcap"
    tap = coral_procs.coral("tap", "--pod", "web", "-n", "shop", "--filter", "tcp port 8080",
                            "--duration", "6s", "--max-packets", "10", "-o", str(pcap),
                            env=colony.operator_env)
    assert "node-node-a" in tap.stderr and "packets" in tap.stderr, (tap.stderr, explain())
    read = subprocess.run(["tcpdump", "-nn", "-r", str(pcap)], capture_output=True, text=True)
    assert read.returncode == 0 and ".8080" in read.stdout, (read.stderr, tap.stderr)

    # Killing the agent's container: the runner restarts it (restartPolicy Always); its
    # state is on the node (hostPath), so the restarted agent registers the set it had
    # and the registry never loses the pod meanwhile.
    pod_a = kube.agent_pods()["node-a"]["metadata"]["name"]
    state = kube.base / "agent-state" / "node-node-a.json"
    assert "web" in state.read_text(), "the agent's last-sent set is on its hostPath volume"
    for name in ("node-node-a.json", "node-node-a.key"):
        mode = (state.parent / name).stat().st_mode
        assert mode & 0o077 == 0, f"{name} is readable beyond root on the node: {oct(mode)}"
    seen: list[bool] = []
    stop = threading.Event()

    def watch_registry() -> None:
        while not stop.wait(0.1):
            seen.append(any(s["pod_name"] == "web" for s in registry(colony)))

    watcher = threading.Thread(target=watch_registry, daemon=True)
    watcher.start()
    try:
        kube.runtime.stop_container(kube.container_id(SYSTEM, pod_a, "coral-agent"))
        wait_for(lambda: cluster.store.get("pods", pod_a, namespace=SYSTEM)["status"][
            "containerStatuses"][0]["restartCount"] >= 1, timeout=30, what="agent restarted")
        wait_for(lambda: any(s["pod_name"] == "web" and s["agent"] == "node-node-a"
                             for s in registry(colony))
                 and "node-node-a" in {a["agent_id"] for a in _agents(colony)
                                       if a["connected"]},
                 timeout=60, what="web served by the restarted agent")
    finally:
        stop.set()
        watcher.join()
    assert seen and all(seen), f"web left the registry during the restart: {seen}"
    # web never left the registry, so the wait above can end before the restarted agent
    # logs its registration: wait for that line itself
    wait_for(lambda: re.search(r"registered with colony", _attempt_log(kube, pod_a, 1)),
             timeout=60, what="the restarted agent's registration in its log")
    restarted = _attempt_log(kube, pod_a, 1)
    first = re.search(r"registered with colony .* \((\d+) services\)", restarted)
    assert first and int(first[1]) >= 1, restarted[-2000:]
    again = coral_procs.coral("exec", "--pod", "web", "-n", "shop", "-o", "json", "--",
                              "cat", "/tmp/marker", env=colony.operator_env)
    assert json.loads(again.stdout)["results"][0]["stdout"] == "in-app\n", again.stderr

    # Take `watch` and `list` on pods away from the shipped ClusterRole: the agents' next
    # list/watch is refused and they say so.
    role = cluster.store.get("clusterroles", "coral-agent")
    role["rules"] = [{"apiGroups": [""], "resources": ["nodes"],
                      "verbs": ["get", "list", "watch"]},
                     {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    cluster.store.update(role)
    cluster.store.drop_watches()
    try:
        wait_for(lambda: "forbidden" in kube.container_log(SYSTEM, pod_a, "coral-agent"),
                 timeout=30, what="the agent reports forbidden")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{explain()}") from None
    line = next(x for x in kube.container_log(SYSTEM, pod_a, "coral-agent").splitlines()
                if "forbidden" in x)
    assert 'HTTP 403 Forbidden: pods is forbidden: User "system:serviceaccount:coral-system:' \
        'coral-agent" cannot ' in line, line
    assert 'resource "pods" in API group "" at the cluster scope' in line, line


def test_e2e_daemonset_agent_readiness_follows_its_colony_through_readyz(kube, cluster_colony):
    """Issue 13, Health: "the DaemonSet ... manifests use them as probes, and the pod runner
    ... exercises them": the pod runner's httpGet probe on /readyz makes the agent pods
    unready while their colony is down, and ready again once it is back."""
    colony = cluster_colony
    if not kube.server.store.list("daemonsets", namespace=SYSTEM):  # run on its own
        kube.deploy_daemonset(colony)
    wait_for(lambda: _ready_agents(kube.server) == (2, 2), timeout=120,
             what="2 of 2 agents ready")
    (probe,) = {json.dumps(p["spec"]["containers"][0]["readinessProbe"]["httpGet"],
                           sort_keys=True) for p in kube.agent_pods().values()}
    assert json.loads(probe) == {"path": "/readyz", "port": "coral-metrics", "scheme": "HTTP"}
    colony.stop()
    try:
        wait_for(lambda: _ready_agents(kube.server) == (2, 0), timeout=60,
                 what="agents unready while the colony is down")
    finally:
        colony.start()
    wait_for(lambda: _ready_agents(kube.server) == (2, 2), timeout=90,
             what="agents ready again once the colony is back")
