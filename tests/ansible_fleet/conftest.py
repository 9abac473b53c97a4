"""Issue 6 fleet fixtures: one colony (with an RBAC policy and a read-only identity), a real
pod from the pod harness with a sidecar agent, two host agents, and ansible-playbook /
ansible-inventory run with this checkout as the coral.mesh collection.

COMPONENT TEST for the sidecar (issue 14): the pod and its sidecar agent come from the pod
harness (tests/sidecar_agent/conftest.py, a plain process in the pod's namespaces; named
shortcut); these tests are about the Ansible modules. The sidecar from the image is
tests/kube_e2e/test_webhook.py."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from tests.security.conftest import PolicyColony
from tests.sidecar.conftest import why_not_runnable
from tests.sidecar_agent.conftest import SidecarAgent
from tests.support import coral_procs, kube_identity, podharness
from tests.support.kubeapi import KubeAPIServer

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent

POLICY = """
rules:
  - name: admins-all
    groups: [admins]
    verbs: ["*"]
  - name: viewer-read
    identities: [viewer]
    verbs: [read]
"""


@dataclasses.dataclass
class Fleet:
    colony: PolicyColony
    pod: podharness.Pod
    sidecar: SidecarAgent
    hosts: list[coral_procs.Agent]
    work: pathlib.Path
    env: dict[str, str]

    def inventory_file(self, name: str, **options) -> pathlib.Path:
        """A coral.mesh.colony inventory source (its name must end in colony.yml)."""
        path = self.work / f"{name}.colony.yml"
        path.write_text(yaml.safe_dump({"plugin": "coral.mesh.colony", **options}))
        return path

    def run(self, *argv: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), env={**self.env, **(env or {})}, cwd=self.work,
                              capture_output=True, text=True, timeout=timeout)

    def inventory(self, source: pathlib.Path, *args: str, env: dict[str, str] | None = None
                  ) -> dict:
        out = self.run(str(BIN / "ansible-inventory"), "-i", str(source), "--list", *args,
                       env=env)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout, object_hook=_plain)

    def playbook(self, plays: list[dict], *, inventory: pathlib.Path, name: str,
                 env: dict[str, str] | None = None, args: tuple[str, ...] = ()
                 ) -> subprocess.CompletedProcess:
        path = self.work / f"{name}.yml"
        path.write_text(yaml.safe_dump(plays, sort_keys=False))
        return self.run(str(BIN / "ansible-playbook"), "-i", str(inventory), str(path), *args,
                        env=env)

    def results(self, name: str, host: str) -> dict:
        return json.loads((self.work / f"{name}-{host}.json").read_text())

    def audit(self, **filters) -> list[dict]:
        with self.colony.client() as c:
            return list(c.audit_records(**filters))


def _plain(obj: dict):
    """ansible-inventory's legacy JSON marks strings {"__ansible_unsafe": s}: unwrap."""
    return obj["__ansible_unsafe"] if set(obj) == {"__ansible_unsafe"} else obj


def save_results(names: list[str], prefix: pathlib.Path) -> dict:
    """A task writing each host's registered results to <prefix>-<host>.json on the
    controller."""
    return {"name": "save results", "delegate_to": "localhost",
            "vars": {"ansible_connection": "local",
                     "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
            "ansible.builtin.copy": {
                "dest": f"{prefix}-{{{{ inventory_hostname }}}}.json",
                "content": "{{ {" + ", ".join(f"'{n}': {n}" for n in names)
                + "} | to_json }}"}}


def _ansible_env(work: pathlib.Path, colony: PolicyColony) -> dict[str, str]:
    # this checkout is the collection: link it as ansible_collections/coral/mesh
    coll = work / "collections" / "ansible_collections" / "coral"
    coll.mkdir(parents=True)
    os.symlink(ROOT, coll / "mesh")
    cfg = work / "ansible.cfg"
    cfg.write_text("[defaults]\nretry_files_enabled = false\ninterpreter_python = auto_silent\n"
                   "host_key_checking = false\n")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_COLLECTIONS_PATH": str(work / "collections"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
           "ANSIBLE_HOME": str(work / "home"), **colony.operator_env}
    for key in ("CORAL_TOKEN", "CORAL_COLONY_DATA_DIR"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="package")
def fleet(tmp_path_factory):
    """The whole fleet, shared by every test of tests/ansible_fleet (read-mostly)."""
    reason = why_not_runnable()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("fleet")
    (work / "policy.yaml").write_text(POLICY)
    kubeapi = KubeAPIServer(work / "kubeapi", nodes=["node-1"]).start()
    kubeconfig = kube_identity.colony_kubeconfig(kubeapi, work / "colony-kubeconfig")
    colony = PolicyColony(work / "colony", args=("--policy", str(work / "policy.yaml"),
                                                 "--token-review-kubeconfig", kubeconfig))
    colony.add_token("viewer")
    colony.start()
    pod = podharness.Pod("shop-7d9f", "payments").start()
    started: list = []
    try:
        pod.add_container("web", ["sh", "-c", "busybox httpd -f -p 8080 & wait"], port=8080,
                          env={"OTEL_SERVICE_NAME": "checkout"})
        sidecar_dir = work / "sidecar"
        sidecar_dir.mkdir()
        sidecar = SidecarAgent(pod, colony, sidecar_dir, kubeapi).start()
        started.append(sidecar)
        for index, env_label in ((1, "test"), (2, "prod")):
            agent = coral_procs.Agent(work / "hosts", colony, agent_id=f"host-{index}", services=[
                {"name": "api", "port": 18080 + index, "labels": {"env": env_label}}]).start()
            started.append(agent)
        coral_procs.wait_registered(colony, ["pod-payments.shop-7d9f", "host-1", "host-2"])
        coral_procs.wait_for(lambda: _registered(colony), what="checkout and api services")
        yield Fleet(colony=colony, pod=pod, sidecar=sidecar, hosts=started[1:], work=work,
                    env=_ansible_env(work, colony))
    finally:
        for proc in started:
            proc.stop()
        pod.stop()
        colony.stop()
        kubeapi.stop()


def _registered(colony: PolicyColony) -> bool:
    with colony.client() as c:
        names = {(s["agent"], s["component_name"]) for s in c.list_services()}
    return {("pod-payments.shop-7d9f", "checkout"), ("host-1", "api"),
            ("host-2", "api")} <= names
