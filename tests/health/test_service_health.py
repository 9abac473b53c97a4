"""Issue 16, "Service health": the health endpoint and interval a service carries (here from
a config override) are probed by its agent when `agent.mode: active` -- HTTP GET, or TCP
without an endpoint -- in the target's network namespace, and each service's health (state,
last check, last error) is in the registry, `coral services`, `coral_services_info` and
the inventory plugin.

A real pod (tests/support/podharness: its own network namespace, made with unshare) runs a
real HTTP server bound to 127.0.0.1 in that namespace; the sidecar agent process stays in
the host network namespace (SidecarAgent.host_netns, so it reaches the colony on loopback),
so a probe that did not enter the pod's namespace would find nothing listening.

COMPONENT TEST (issue 14): the sidecar agent is the pod harness's plain process (named
shortcut, tests/sidecar_agent/conftest.py), not the image."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from tests.ansible_fleet.conftest import _plain
from tests.sidecar.conftest import why_not_runnable
from tests.sidecar_agent.conftest import SidecarAgent
from tests.support import coral_procs, podharness
from tests.support.coral_procs import wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVER = """
import http.server, os, sys
SICK = sys.argv[2]
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 503 if os.path.exists(SICK) else 200
        self.send_response(code if self.path == "/healthz" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


@pytest.fixture
def health_pod(tmp_path, colony, kubeapi):  # noqa: F811
    reason = why_not_runnable()
    if reason:
        pytest.skip(reason)
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    sick = tmp_path / "sick"
    pod = podharness.Pod("shop-health", "payments").start()
    agent = None
    try:
        pod.add_container("web", [sys.executable, str(script), "8081", str(sick)], port=8081,
                          env={"OTEL_SERVICE_NAME": "checkout"})
        pod.add_container("cache", [sys.executable, "-m", "http.server", "9090", "--bind",
                                    "127.0.0.1"], port=9090)
        agent = SidecarAgent(pod, colony, tmp_path, kubeapi)
        agent.host_netns = True  # see the module docstring
        body = yaml.safe_load(agent.config.read_text())
        body["agent"]["mode"] = "active"
        body["overrides"] = [{"selector": {"port": 8081}, "service": {
            "health": {"endpoint": "/healthz", "interval": "500ms"}}},
            {"selector": {"port": 9090}, "service": {"health": {"interval": "500ms"}}}]
        agent.config.write_text(yaml.safe_dump(body))
        agent.start()
        coral_procs.wait_registered(colony, [agent.agent_id])
        yield pod, agent, sick
    finally:
        if agent:
            agent.stop()
        pod.stop()


def _health(colony) -> dict[str, dict]:
    with colony.client() as c:
        return {s["component_name"]: s["health"] for s in c.list_services()}


def test_active_agent_probes_http_and_tcp_in_the_pod_netns_and_reports_health(
        colony, health_pod):
    pod, agent, sick = health_pod
    wait_for(lambda: {k: v["state"] for k, v in _health(colony).items()} == {
        "checkout": "healthy", "cache": "healthy"}, timeout=20,
        what="both services probed healthy")
    first = _health(colony)["checkout"]
    assert first["last_error"] == "" and first["last_check"] > 0
    sick.write_text("")  # the app goes unhealthy: /healthz answers 503
    wait_for(lambda: _health(colony)["checkout"]["state"] == "unhealthy", timeout=20,
             what="checkout unhealthy")
    assert _health(colony)["checkout"]["last_error"] == "GET /healthz: HTTP 503"
    assert _health(colony)["cache"]["state"] == "healthy"
    table = coral_procs.coral("services", env=colony.operator_env)
    (line,) = [row for row in table.stdout.splitlines() if row.startswith("checkout")]
    assert line.split()[-1] == "unhealthy", table.stdout
    listing = json.loads(coral_procs.coral("services", "-o", "json",
                                           env=colony.operator_env).stdout)
    assert {s["component_name"]: s["health"]["state"] for s in listing} == {
        "checkout": "unhealthy", "cache": "healthy"}
    sick.unlink()
    wait_for(lambda: _health(colony)["checkout"]["state"] == "healthy", timeout=20,
             what="checkout healthy again")


def test_service_health_reaches_coral_services_info_and_the_inventory(
        tmp_path, colony, health_pod):
    pod, agent, sick = health_pod
    sick.write_text("")
    wait_for(lambda: _health(colony).get("checkout", {}).get("state") == "unhealthy",
             timeout=20, what="checkout unhealthy")
    env = _ansible_env(tmp_path, colony)
    playbook = tmp_path / "health.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False,
                                         "tasks": [{"coral.mesh.coral_services_info": {
                                             "name": "checkout"}, "register": "found"},
                                             {"debug": {"var": "found.services"}}]}]))
    run = subprocess.run([str(pathlib.Path(sys.executable).parent / "ansible-playbook"),
                          "-i", "localhost,", "-c", "local", str(playbook), "-e",
                          f"ansible_python_interpreter={sys.executable}"],
                         capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert '"state": "unhealthy"' in run.stdout and "HTTP 503" in run.stdout, run.stdout
    inventory = tmp_path / "coral.colony.yml"
    inventory.write_text(yaml.safe_dump({"plugin": "coral.mesh.colony", "host_per": "service",
                                         "colony_address": colony.address,
                                         "colony_ca_file": str(colony.data_dir / "ca.crt"),
                                         "colony_token_file": str(colony.data_dir /
                                                                  "admin.token")}))
    listed = subprocess.run([str(pathlib.Path(sys.executable).parent / "ansible-inventory"),
                             "-i", str(inventory), "--list"], capture_output=True, text=True,
                            env=env, timeout=120, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr[-2000:]
    hostvars = json.loads(listed.stdout, object_hook=_plain)["_meta"]["hostvars"]
    (checkout,) = [v for v in hostvars.values() if v["coral_service"] == "checkout"]
    assert checkout["coral_health"]["checkout:8081"]["state"] == "unhealthy"
    assert checkout["coral_health"]["checkout:8081"]["last_error"] == "GET /healthz: HTTP 503"


def _ansible_env(work: pathlib.Path, colony) -> dict[str, str]:
    """This checkout as the coral.mesh collection (as tests/ansible_fleet does)."""
    coll = work / "collections" / "ansible_collections" / "coral"
    coll.mkdir(parents=True)
    os.symlink(ROOT, coll / "mesh")
    cfg = work / "ansible.cfg"
    cfg.write_text("[defaults]\nretry_files_enabled = false\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_COLLECTIONS_PATH": str(work / "collections"),
           "ANSIBLE_LOCAL_TEMP": str(work / "tmp"), "ANSIBLE_HOME": str(work / "home"),
           **colony.operator_env}
    env.pop("CORAL_TOKEN", None)
    return env
