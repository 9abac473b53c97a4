"""Issue 16, "Service health" in host mode: an explicit service's health endpoint and
interval from the agent config, probed in the host's network namespace by a real host
agent process (`agent.mode: active`), a real HTTP server that stops answering."""

from __future__ import annotations

import subprocess
import sys

from tests.support import coral_procs
from tests.support.coral_procs import wait_for


def _health(colony) -> dict:
    with colony.client() as c:
        rows = c.list_services(name="billing")
    return rows[0]["health"] if rows else {}


def test_host_agent_probes_an_explicit_service_and_reports_it_down(tmp_path, colony):
    port = coral_procs.free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (tmp_path / "healthz").write_text("ok")
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="vm-health", services=[
        {"name": "billing", "port": port, "health": {"endpoint": "/healthz",
                                                     "interval": "500ms"}}],
        extra={"agent": {"id": "vm-health", "mode": "active"}}).start()
    try:
        wait_for(lambda: _health(colony).get("state") == "healthy", timeout=30,
                 what="billing healthy")
        coral_procs.stop_process(server)
        wait_for(lambda: _health(colony).get("state") == "unhealthy", timeout=20,
                 what="billing unhealthy")
        # the agent knew the server's process (host discovery): it is gone
        assert _health(colony)["last_error"] in ("Connection refused",
                                                 "the service's process is gone")
    finally:
        agent.stop()
        coral_procs.stop_process(server)


def test_passive_agent_leaves_health_unchecked(tmp_path, colony):
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="vm-passive", services=[
        {"name": "billing", "port": coral_procs.free_port()}]).start()
    try:
        coral_procs.wait_registered(colony, ["vm-passive"])
        assert _health(colony) == {"state": "unchecked", "last_check": None, "last_error": ""}
    finally:
        agent.stop()
