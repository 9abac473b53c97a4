"""Fleet exec fan-out, side by side: `uname -a` in N = 10, 50 and 200 pods.

The same N real pods for both: containerd CRI pods (busybox, private containerd + runc,
kubelet's labels and cgroup parents) on node-a, mirrored in the API server fixture with
their real container ids.

* Coral: ONE `coral.mesh.coral_exec` task (real ansible-playbook) with a label selector
  that matches the N pods; the colony fans out to the node's DaemonSet agent
  (`coral agent node --cri-socket ...`), which runs the command in each container with CRI
  ExecSync.
* Baseline, what users do today: `kubernetes.core.k8s_exec` in a loop over the N pods
  (default forks) against the API server fixture's pods/exec WebSocket endpoint; the
  fixture's exec_handler runs the command in the same container with CRI ExecSync too.

A second, lighter baseline is measured too: a shell loop of `kubectl exec` (kubectl
v1.32, one process per pod) against the same endpoint and containers.

Both playbooks end with the same assert task (every pod answered rc 0 with "Linux" in its
output). Wall time is the whole ansible-playbook run. Coral and kubectl runs are repeated
(median); the k8s_exec loop runs once per N up to BENCH_FANOUT_K8S_EXEC_MAX (default 50:
each item is a fresh Python importing the kubernetes client, ~seconds); above that its
time is PROJECTED from the measured per-pod cost (the loop is sequential) and the figure
names say `_projected`. Target: coral >= 20x faster than the k8s_exec loop at N=200.

    .venv/bin/python -m bench --only fanout [--quick]
"""

from __future__ import annotations

import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coral_lib.ops import base, cri  # noqa: E402
from tests.support import containerd, coral_procs, kube_identity  # noqa: E402
from tests.support.kubeapi import KubeAPIServer  # noqa: E402

NODE, NAMESPACE = "node-a", "fanout"
SIZES = (10, 50, 200)
TARGET_RATIO = 20.0
# Largest N the k8s_exec loop is run at (each item costs seconds: a fresh Python importing
# the kubernetes client); larger N are projected from its per-pod cost and named so.
K8S_EXEC_MAX = int(os.environ.get("BENCH_FANOUT_K8S_EXEC_MAX", "50"))
VENV_PY = sys.executable

CORAL_PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars: {{ansible_python_interpreter: "{python}"}}
  tasks:
    - name: uname -a in every selected pod, one task
      coral.mesh.coral_exec:
        colony_address: "{address}"
        colony_ca_file: "{ca}"
        colony_token_file: "{token}"
        selector: {{"{group}": "yes"}}
        command: uname -a
        timeout: 60
      register: out
    - name: every pod answered
      ansible.builtin.assert:
        that:
          - out.results | length == {n}
          - out.results | selectattr('rc', 'equalto', 0) | list | length == {n}
          - out.results | selectattr('stdout', 'search', 'Linux') | list | length == {n}
"""

BASELINE_PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars: {{ansible_python_interpreter: "{python}"}}
  tasks:
    - name: uname -a in every selected pod, k8s_exec in a loop
      kubernetes.core.k8s_exec:
        kubeconfig: "{kubeconfig}"
        namespace: {namespace}
        pod: "{{{{ item }}}}"
        container: app
        command: uname -a
      loop: {pods}
      register: out
    - name: every pod answered
      ansible.builtin.assert:
        that:
          - out.results | length == {n}
          - out.results | selectattr('rc', 'equalto', 0) | list | length == {n}
          - out.results | selectattr('stdout', 'search', 'Linux') | list | length == {n}
"""


def why_not_runnable() -> str:
    missing = [b for b in ("containerd", "containerd-shim-runc-v2", "runc", "ctr")
               if shutil.which(b) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install -y containerd runc busybox-static)"
    return "" if os.geteuid() == 0 else "containerd needs root"


class CRIProcess:
    """What the fixture's exec_handler returns: a Popen look-alike whose command ran in the
    container through CRI ExecSync (the kubelet path, minus kubelet)."""

    def __init__(self, backend: cri.CRIBackend, pod: dict, container: str,
                 argv: list[str]) -> None:
        out_r, self._out_w = os.pipe()
        err_r, self._err_w = os.pipe()
        self.stdout, self.stderr, self.stdin = os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb"), None
        self.returncode: int | None = None
        meta = pod["metadata"]
        self._request = base.ExecRequest(argv=argv, timeout=60, target=base.ExecTarget(
            namespace=meta["namespace"], pod_name=meta["name"], container_name=container))
        self._thread = threading.Thread(target=self._run, args=(backend,), daemon=True)
        self._thread.start()

    def _run(self, backend: cri.CRIBackend) -> None:
        try:
            result = backend.run(self._request)
            out, err, code = result.stdout, result.stderr + result.error.encode(), result.exit_code
        except base.OperationError as exc:
            out, err, code = b"", str(exc).encode(), 126
        for fd, data in ((self._out_w, out), (self._err_w, err)):
            with os.fdopen(fd, "wb") as pipe:
                pipe.write(data)
        self.returncode = code

    def wait(self, timeout: float | None = None) -> int:
        self._thread.join(timeout)
        return self.returncode if self.returncode is not None else -9

    def kill(self) -> None:
        pass  # ExecSync ends by its own timeout


def make_pods(runtime: containerd.Containerd, kubeapi: KubeAPIServer, count: int) -> list[str]:
    names = []
    for i in range(count):
        name = f"fan-{i:03d}"
        groups = {f"g{n}": "yes" for n in SIZES if i < n}
        created = kubeapi.store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "namespace": NAMESPACE, "labels": {"app": name, **groups}},
            "spec": {"nodeName": NODE, "containers": [
                {"name": "app", "image": containerd.BUSYBOX_IMAGE,
                 "ports": [{"containerPort": 8080, "name": "http"}]}]}})
        uid = created["metadata"]["uid"]
        handle = runtime.run_pod(name, NAMESPACE, uid,
                                 cgroup_parent=f"/kubepods/besteffort/pod{uid}",
                                 containers=[{"name": "app", "argv": ["sleep", "100000"]}])
        kubeapi.store.patch("pods", name, {"status": {"containerStatuses": [
            {"name": "app", "ready": True,
             "containerID": f"containerd://{handle.containers['app']}"}]}},
            namespace=NAMESPACE, subresource="status")
        names.append(name)
    return names


def start_node_agent(base_dir: pathlib.Path, colony: coral_procs.Colony, *,
                     kubeapi: KubeAPIServer, cri_socket: str) -> subprocess.Popen:
    token = kube_identity.node_agent_token(kubeapi, NODE, base_dir / "agent.token")
    kubeconfig = kubeapi.kubeconfig_path
    cfg = base_dir / "agent.yaml"
    cfg.write_text(
        f"agent: {{id: node-{NODE}, runtime: daemonset}}\n"
        f"colony: {{address: '{colony.address}', caFile: '{colony.data_dir / 'ca.crt'}', "
        f"id: '{colony.colony_id}', serviceAccountTokenFile: '{token}'}}\n")
    log = open(base_dir / "agent.log", "ab")
    proc = subprocess.Popen(
        [*coral_procs.CORAL, "agent", "node", "--config", str(cfg), "--kubeconfig", kubeconfig,
         "--node-name", NODE, "--cri-socket", cri_socket, "--state-dir", str(base_dir / "st")],
        stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
    log.close()
    return proc


def playbook(path: pathlib.Path, text: str) -> float:
    """Run ansible-playbook on `text`; wall seconds. Raises with the output on failure."""
    path.write_text(text)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_COLLECTIONS_PATH": f"{ROOT / '.collections'}:"
                                       f"{os.path.expanduser('~/.ansible/collections')}"}
    started = time.perf_counter()
    proc = subprocess.run([str(pathlib.Path(VENV_PY).parent / "ansible-playbook"), str(path)],
                          capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=1800)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{path.name} failed (rc {proc.returncode}): "
                           f"{(proc.stdout + proc.stderr)[-3000:]}")
    return seconds


def kubectl_loop(kubeconfig: str, pods: list[str]) -> float:
    """The shell-loop baseline: `kubectl exec` once per pod, one after the other."""
    script = ('for p in "$@"; do kubectl --kubeconfig "$KC" exec -n ' + NAMESPACE +
              ' "$p" -c app -- uname -a || exit 1; done')
    started = time.perf_counter()
    proc = subprocess.run(["bash", "-c", script, "loop", *pods], capture_output=True, text=True,
                          env={**os.environ, "KC": kubeconfig}, timeout=1800)
    seconds = time.perf_counter() - started
    answered = sum("Linux" in line for line in proc.stdout.splitlines())
    if proc.returncode != 0 or answered != len(pods):
        raise RuntimeError(f"kubectl exec loop: rc {proc.returncode}, {answered}/{len(pods)} "
                           f"answered: {proc.stderr[-2000:]}")
    return seconds


def module_import_seconds() -> float:
    """What each k8s_exec loop item pays before it talks to the API server: importing the
    module and the `kubernetes` client APIs it loads (a fresh Python per item)."""
    code = ("import time; t = time.perf_counter(); "
            "import ansible_collections.kubernetes.core.plugins.modules.k8s_exec; "
            "print(time.perf_counter() - t)")
    out = subprocess.run([VENV_PY, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def measure(work: pathlib.Path, *, colony, kubeapi, pods: list[str], sizes, coral_runs: int,
            baseline_runs: int) -> dict:
    figures: dict = {}
    token = colony.data_dir / "admin.token"
    per_pod: float | None = None
    for n in sizes:
        coral_text = CORAL_PLAY.format(python=VENV_PY, address=colony.address,
                                       ca=colony.data_dir / "ca.crt", token=token,
                                       group=f"g{n}", n=n)
        base_text = BASELINE_PLAY.format(python=VENV_PY, kubeconfig=kubeapi.kubeconfig_path,
                                         namespace=NAMESPACE, pods=pods[:n], n=n)
        coral_s = [playbook(work / f"coral-{n}.yml", coral_text) for _ in range(coral_runs)]
        kubectl_s = [kubectl_loop(kubeapi.kubeconfig_path, pods[:n]) for _ in range(coral_runs)]
        coral_med, kubectl_med = statistics.median(coral_s), statistics.median(kubectl_s)
        base_s = ([playbook(work / f"k8s-exec-{n}.yml", base_text) for _ in range(baseline_runs)]
                  if n <= K8S_EXEC_MAX else [])
        if base_s:
            base_med = statistics.median(base_s)
            per_pod = base_med / n
            figures.update({f"n{n}_k8s_exec_loop_s": round(base_med, 2),
                            f"n{n}_ratio": round(base_med / coral_med, 1),
                            f"n{n}_k8s_exec_per_pod_s": round(per_pod, 2)})
        elif per_pod is not None:  # sequential loop: N x the per-pod cost at a smaller N
            figures[f"n{n}_k8s_exec_loop_s_projected"] = round(per_pod * n, 1)
            figures[f"n{n}_ratio_projected"] = round(per_pod * n / coral_med, 1)
        figures.update({f"n{n}_coral_s": round(coral_med, 2),
                        f"n{n}_kubectl_exec_loop_s": round(kubectl_med, 2),
                        f"n{n}_ratio_vs_kubectl_loop": round(kubectl_med / coral_med, 1),
                        f"n{n}_runs": {"coral": len(coral_s), "k8s_exec": len(base_s),
                                       "kubectl": len(kubectl_s)}})
    figures["k8s_exec_module_import_s"] = round(module_import_seconds(), 2)
    return figures


def run(*, quick: bool = False) -> dict:
    reason = why_not_runnable()
    if reason:
        raise RuntimeError(f"fan-out benchmark cannot run here: {reason}")
    sizes = SIZES[:1] if quick else SIZES
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        work = pathlib.Path(tmp)
        with containerd.Containerd(work / "cri") as runtime, \
                cri.CRIBackend(runtime.socket) as backend:
            kubeapi = KubeAPIServer(work / "kubeapi", nodes=(NODE,), bookmark_interval=1.0)
            kubeapi.start()
            colony = agent = None
            try:
                kubeapi.store.create({"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": NAMESPACE}})
                kubeapi.exec_handler = lambda pod, container, argv: CRIProcess(
                    backend, pod, container, argv)
                started = time.perf_counter()
                pods = make_pods(runtime, kubeapi, max(sizes))
                setup_s = time.perf_counter() - started
                kubeconfig = kube_identity.colony_kubeconfig(kubeapi, work / "colony-kc")
                colony = coral_procs.Colony(
                    work / "colony", args=("--token-review-kubeconfig", kubeconfig)).start()
                agent = start_node_agent(work, colony, kubeapi=kubeapi, cri_socket=runtime.socket)
                with colony.client() as c:
                    coral_procs.wait_for(lambda: len(c.list_services(namespace=NAMESPACE))
                                         == len(pods), timeout=120, what="pods registered")
                coral_procs.wait_registered(colony, [f"node-{NODE}"])
                figures = measure(work, colony=colony, kubeapi=kubeapi, pods=pods, sizes=sizes,
                                  coral_runs=3, baseline_runs=1 if not quick else 1)
            finally:
                if agent is not None:
                    agent.terminate()
                    agent.wait(10)
                if colony is not None:
                    colony.stop()
                kubeapi.stop()
    top = max(sizes)
    ratio = figures.get(f"n{top}_ratio", figures.get(f"n{top}_ratio_projected"))
    return {"pods": len(pods), "pod_setup_s": round(setup_s, 1), **figures,
            "k8s_exec_measured_up_to_n": K8S_EXEC_MAX, "ratio_target": TARGET_RATIO,
            "ratio_target_met": (ratio >= TARGET_RATIO) if top == 200 and ratio else None,
            "exec_path": "both: CRI ExecSync into the same containerd containers"}


def main() -> None:
    figures = run(quick="--quick" in sys.argv)
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
