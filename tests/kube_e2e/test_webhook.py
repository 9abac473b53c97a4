"""Issue 14 §4.2 "Webhook: the webhook Deployment runs from the image behind its Service
(admission calls the pod); an app pod created with kubectl in a labelled namespace gets the
sidecar; the runner starts it with exactly the injected securityContext; the sidecar
registers and exec, shell and tap into the app container work with that capability set" —
the webhook deployed by `ansible-playbook playbooks/deploy-coral.yml -e coral_mode=webhook`.

The app pod runs on the pod network in a namespace enforcing Pod Security `baseline` (the
level the README claims for injected pods), so exec, shell and tap go through the sidecar
in the pod's own namespaces.

FIXTURE NOTE (tests/support/kubecluster.py): the webhook runs with hostNetwork (one replica
on a free port) because the API fixture, which it asks for namespace labels, listens on
loopback; the sidecar reaches the loopback colony through a relay on the pod network's
gateway, named by this machine's hostname through the pod's hostAliases
(kube.colony_for_pods / kube.pod_host_aliases), where a cluster has a Service and DNS."""

from __future__ import annotations

import json
import os
import subprocess

from coral_lib._proto.cri.runtime.v1 import api_pb2
from tests.kube_e2e.conftest import deploy_webhook_with_ansible
from tests.support import coral_procs, tools
from tests.support.coral_procs import wait_for
from tests.support.kubeapi import podsecurity, workloads
from tests.support.kubecluster import SYSTEM

SIDECAR = ("--agent", "pod-shop2.app", "--pod", "app", "-n", "shop2", "-c", "app")
CAP_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
            "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_RAW": 13, "SYS_CHROOT": 18,
            "SYS_PTRACE": 19, "SYS_ADMIN": 21, "MKNOD": 27, "AUDIT_WRITE": 29, "SETFCAP": 31}
DEFAULT_CAPS = {"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
                "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",
                "AUDIT_WRITE"}


def expected_caps(sc: dict) -> set[str]:
    caps = sc.get("capabilities") or {}
    drop = {c.upper() for c in caps.get("drop") or []}
    base = set() if "ALL" in drop else DEFAULT_CAPS - drop
    return base | {c.upper() for c in caps.get("add") or []}


def test_e2e_webhook_sidecar_runs_with_exactly_the_injected_security_context(
        kube, cluster_colony, tmp_path):
    colony = cluster_colony
    server = kube.server
    server.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "shop2", "labels": {"kubernetes.io/metadata.name": "shop2",
                                    podsecurity.LABEL: "baseline"}}})
    deploy_webhook_with_ansible(kube, colony, tmp_path, inject_namespaces=["shop2"])
    assert server.store.get("namespaces", "shop2")["metadata"]["labels"][
        "coral.io/inject"] == "true"
    wait_for(lambda: [(p["spec"].get("hostNetwork"), workloads.is_ready(p))
                      for p in kube.webhook_pods()] == [(True, True)]
             and server.store.get("deployments", "coral-webhook", namespace=SYSTEM)
             .get("status", {}).get("availableReplicas") == 1, timeout=120,
             what="webhook Deployment available (real /healthz readiness)")

    port = 8080  # in the pod's own network namespace
    app = (f"echo in-app > /tmp/marker; httpd -p 127.0.0.1:{port} -h /tmp; while :; do "
           f"wget -q -O /dev/null http://127.0.0.1:{port}/marker; sleep 0.3; done")
    manifest = tmp_path / "app.yaml"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "app", "namespace": "shop2"}, "spec": {
        "nodeName": "node-a", "hostAliases": kube.pod_host_aliases(), "containers": [{
            "name": "app", "image": "docker.io/local/busybox:latest",
            "command": ["sh", "-c", app]}]}}))
    calls_before = len(server.admission.calls)
    made = subprocess.run([tools.kubectl(), "--kubeconfig", server.kubeconfig_path, "create", "-f",
                           str(manifest)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    created = server.store.get("pods", "app", namespace="shop2")
    assert not created["spec"].get("hostNetwork")
    # Admission called the webhook pod through its Service and it injected the sidecar.
    assert [c.get("allowed") for c in server.admission.calls[calls_before:]] == [True]
    pods = kube.webhook_pods()
    log = kube.container_log(SYSTEM, pods[0]["metadata"]["name"], "webhook") if pods else ""
    warnings = [w for c in server.admission.calls[calls_before:] for w in c.get("warnings", [])]
    assert created["spec"].get("initContainers"), (warnings, log[-1000:])
    (sidecar,) = created["spec"]["initContainers"]
    assert sidecar["restartPolicy"] == "Always" and created["spec"]["shareProcessNamespace"]
    injected = sidecar.get("securityContext") or {}

    def sidecar_status() -> dict:
        pod = server.store.get("pods", "app", namespace="shop2")
        return ((pod.get("status") or {}).get("initContainerStatuses") or [{}])[0]
    wait_for(lambda: workloads.is_ready(server.store.get("pods", "app", namespace="shop2")),
             timeout=90, what=f"app pod ready ({sidecar_status()})")
    cid = sidecar_status()["containerID"].split("://", 1)[1]
    reply = kube.runtime.runtime.ExecSync(api_pb2.ExecSyncRequest(
        container_id=cid, cmd=["cat", "/proc/1/status", "/proc/self/status"], timeout=10),
        timeout=20)
    status = reply.stdout.decode()
    own = status[status.rindex("Name:"):]  # /proc/self/status: the sidecar's own process
    fields = dict(line.split(":", 1) for line in own.splitlines() if ":" in line)
    mask = int(fields["CapEff"].strip(), 16)
    have = {n for n, bit in CAP_BITS.items() if mask >> bit & 1}
    assert have == expected_caps(injected), (injected, fields["CapEff"])
    if "runAsUser" in injected:
        assert fields["Uid"].split()[0] == str(injected["runAsUser"])
    assert fields["NoNewPrivs"].strip() == (
        "1" if injected.get("allowPrivilegeEscalation") is False else "0")

    # The sidecar registers with the colony (its own pod identity, from its projected token).
    wait_for(lambda: any(a["agent_id"].startswith("pod-shop2.app")
                         for a in _agents(colony) if a.get("connected")), timeout=90,
             what="sidecar agent registered")
    # Exec into the app container through the sidecar, with the injected capability set.
    # (--agent narrows to the sidecar: a DaemonSet agent on the node, from another test,
    # sees this pod too.)
    run = coral_procs.coral("exec", *SIDECAR, "-o", "json", "--", "cat", "/tmp/marker",
                            env=colony.operator_env)
    assert run.stdout, run.stderr
    (result,) = json.loads(run.stdout)["results"]
    assert result["agent"] == "pod-shop2.app", result
    assert (result["rc"], result["stdout"]) == (0, "in-app\n"), json.dumps(result)

    # A shell in the app container through the sidecar (chroot as the app's uid).
    shell = subprocess.run(
        [*coral_procs.CORAL, "shell", *SIDECAR, "--",
         "sh", "-c", "cat /tmp/marker; exit 7"], stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60, env={**os.environ, **colony.operator_env})
    assert shell.returncode == 7 and "in-app" in shell.stdout, shell

    # Tap in the pod's own network namespace, which the sidecar shares (NET_RAW only).
    pcap = tmp_path / "app.pcap"
    tap = coral_procs.coral("tap", *SIDECAR, "--filter",
                            f"tcp port {port}", "--duration", "6s", "--max-packets", "10",
                            "-o", str(pcap), env=colony.operator_env)
    assert "pod-shop2.app" in tap.stderr and "packets" in tap.stderr, tap.stderr
    read = subprocess.run(["tcpdump", "-nn", "-r", str(pcap)], capture_output=True, text=True)
    assert read.returncode == 0 and f".{port}" in read.stdout, (read.stderr, tap.stderr)


def _agents(colony) -> list[dict]:
    with colony.client() as c:
        return c.list_agents()
