"""Conformance with the real kubectl (v1.32): get -o json, get -w, apply (client- and
server-side), exec exit codes, delete, rollout status/undo of a DaemonSet."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.kubeapi.conftest import KUBECTL, pod


def test_get_pods_json_and_selector(kubectl, server, ns):
    for name, app in (("k1", "a"), ("k2", "b")):
        server.store.create(pod(name, labels={"app": app}), namespace=ns)
    out = kubectl("get", "pods", "-n", ns, "-o", "json", check=True)
    doc = json.loads(out.stdout)
    assert sorted(i["metadata"]["name"] for i in doc["items"]) == ["k1", "k2"]
    out = kubectl("get", "pods", "-n", ns, "-l", "app=b", "-o", "name", check=True)
    assert out.stdout.split() == ["pod/k2"]
    out = kubectl("get", "pods", "-n", ns, "--field-selector", "metadata.name=k1", "-o", "name")
    assert out.stdout.split() == ["pod/k1"]


def test_get_pods_watch_streams_events(server, ns):
    server.store.create(pod("w0"), namespace=ns)
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", server.kubeconfig_path, "get", "pods",
                             "-n", ns, "-w", "-o", "name"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "pod/w0"  # the initial list
        for i in range(1, 4):
            server.store.create(pod(f"w{i}"), namespace=ns)
            assert proc.stdout.readline().strip() == f"pod/w{i}"  # watch events
    finally:
        proc.kill()
        proc.wait()


def test_get_prints_server_side_table(kubectl, server, ns):
    server.store.create(pod("t1"), namespace=ns)
    out = kubectl("get", "pods", "-n", ns, check=True).stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert out[1].split()[:4] == ["t1", "1/1", "Running", "0"]
    nodes = kubectl("get", "nodes", check=True).stdout.splitlines()
    assert nodes[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]


def test_get_pods_watch_table_output(server, ns):
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", server.kubeconfig_path, "get", "pods",
                             "-n", ns, "-w"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        server.store.create(pod("tw"), namespace=ns)
        assert proc.stdout.readline().split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert proc.stdout.readline().split()[:3] == ["tw", "1/1", "Running"]
        server.store.delete("pods", "tw", namespace=ns)
        assert proc.stdout.readline().split()[:3] == ["tw", "1/1", "Terminating"]
    finally:
        proc.kill()
        proc.wait()


_MANIFEST = """
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{level: "{level}"}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: agent}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: "nginx:{level}"
        ports: [{{containerPort: 80}}]
"""


@pytest.mark.parametrize("server_side", [False, True], ids=["client-side", "server-side"])
def test_apply_idempotent_then_configured(kubectl, tmp_path, ns, server_side, server):
    path = tmp_path / "m.yaml"
    path.write_text(_MANIFEST.format(level="1"))
    extra = ["--server-side"] if server_side else []
    first = kubectl("apply", "-n", ns, *extra, "-f", str(path))
    assert first.returncode == 0, first.stderr
    word = "serverside-applied" if server_side else "created"
    assert first.stdout.count(word) == 3
    rv = server.store.get("deployments", "web", namespace=ns)["metadata"]["resourceVersion"]
    again = kubectl("apply", "-n", ns, *extra, "-f", str(path), check=True)
    if not server_side:
        assert again.stdout.count("unchanged") == 3
    assert server.store.get("deployments", "web",
                            namespace=ns)["metadata"]["resourceVersion"] == rv
    path.write_text(_MANIFEST.format(level="2"))
    kubectl("apply", "-n", ns, *extra, "-f", str(path), check=True)
    dep = server.store.get("deployments", "web", namespace=ns)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
    assert dep["metadata"]["generation"] == 2
    status = kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=10s")
    assert status.returncode == 0 and "successfully rolled out" in status.stdout


def test_exec_exit_code_propagates(kubectl, server, ns):
    server.store.create(pod("ex"), namespace=ns)
    out = kubectl("exec", "-n", ns, "ex", "--", "sh", "-c", "echo hi; echo oops >&2; exit 3")
    assert out.returncode == 3
    assert out.stdout == "hi\n" and "oops" in out.stderr
    ok = kubectl("exec", "-n", ns, "ex", "--", "echo", "fine")
    assert (ok.returncode, ok.stdout) == (0, "fine\n")


def test_exec_with_stdin(kubectl, server, ns):
    server.store.create(pod("in"), namespace=ns)
    out = subprocess.run([KUBECTL, "--kubeconfig", server.kubeconfig_path, "exec", "-i",
                          "-n", ns, "in", "--", "tr", "a-z", "A-Z"], input="shout\n",
                         capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout) == (0, "SHOUT\n")


def test_delete(kubectl, server, ns):
    server.store.create(pod("del"), namespace=ns)
    out = kubectl("delete", "pod", "-n", ns, "del", "--wait=true", "--timeout=10s")
    assert out.returncode == 0 and 'pod "del" deleted' in out.stdout
    assert server.store.list("pods", namespace=ns) == []
    missing = kubectl("delete", "pod", "-n", ns, "del")
    assert missing.returncode == 1 and 'pods "del" not found' in missing.stderr


_DS = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agent}}
spec:
  selector: {{matchLabels: {{app: agent}}}}
  template:
    metadata: {{labels: {{app: agent}}}}
    spec:
      containers: [{{name: agent, image: "agent:{v}"}}]
"""


def test_daemonset_rollout_status_and_undo(kubectl, tmp_path, ns, server):
    path = tmp_path / "ds.yaml"
    for v in ("1", "2"):
        path.write_text(_DS.format(v=v))
        kubectl("apply", "-n", ns, "-f", str(path), check=True)
    ds = server.store.get("daemonsets", "agent", namespace=ns)
    assert ds["status"]["desiredNumberScheduled"] == 2 == ds["status"]["numberReady"]
    status = kubectl("rollout", "status", "-n", ns, "ds/agent", "--timeout=10s")
    assert status.returncode == 0, status.stderr
    revisions = server.store.list("controllerrevisions", namespace=ns)
    assert sorted(r["revision"] for r in revisions) == [1, 2]
    undo = kubectl("rollout", "undo", "-n", ns, "ds/agent")
    assert undo.returncode == 0, undo.stderr
    ds = server.store.get("daemonsets", "agent", namespace=ns)
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == "agent:1"
    time.sleep(0)  # the controller wrote the status in the same request
    assert ds["status"]["observedGeneration"] == ds["metadata"]["generation"] == 3
    assert max(r["revision"] for r in server.store.list("controllerrevisions",
                                                        namespace=ns)) == 3


_TWO = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: pair, labels: {labels}}}
spec:
  selector: {{matchLabels: {{app: pair}}}}
  template:
    metadata: {{labels: {{app: pair}}}}
    spec:
      containers:
{containers}
"""


@pytest.mark.parametrize("server_side", [False, True], ids=["client-side", "server-side"])
def test_apply_removes_what_the_manifest_dropped(kubectl, tmp_path, ns, server, server_side):
    """Strategic merge from kubectl's 3-way diff ($patch: delete, $setElementOrder, null)
    and server-side apply both remove a container and a label the manifest no longer has."""
    c = "      - {{name: {0}, image: {0}:1}}"
    path = tmp_path / "pair.yaml"
    extra = ["--server-side"] if server_side else []
    path.write_text(_TWO.format(labels="{a: '1', b: '2'}",
                                containers="\n".join(c.format(n) for n in ("main", "side"))))
    kubectl("apply", "-n", ns, *extra, "-f", str(path), check=True)
    path.write_text(_TWO.format(labels="{a: '1'}", containers=c.format("main")))
    out = kubectl("apply", "-n", ns, *extra, "-f", str(path))
    assert out.returncode == 0, out.stderr
    dep = server.store.get("deployments", "pair", namespace=ns)
    assert [x["name"] for x in dep["spec"]["template"]["spec"]["containers"]] == ["main"]
    assert dep["metadata"]["labels"] == {"a": "1"}
