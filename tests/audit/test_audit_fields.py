"""Issue 16, "Audit fields": operation records carry node and provenance; discovery records
carry the runtime; services whose fields change while staying discovered are recorded.
A real colony and a real host agent process over TLS."""

from __future__ import annotations

import socket

import yaml

from coral_lib.colony import discovery_record
from tests.support import coral_procs


def _records(colony, kind: str) -> list[dict]:
    with colony.client() as c:
        return c.audit(kind=kind, limit=10_000)


def _api(colony) -> list[tuple[str, dict]]:
    """(event, record) for each discovery record naming the explicit service api (the
    host's own sockets are others)."""
    return [(event, r) for r in _records(colony, "discovery")
            for event, key in discovery_record.events(r) if key.endswith("/api:18102")]


def test_operation_records_carry_node_and_provenance(tmp_path, colony):
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="vm-1", services=[
        {"name": "api", "port": 18101}]).start()
    try:
        coral_procs.wait_registered(colony, ["vm-1"])
        for targeting in (["--service", "api"], ["--agent", "vm-1"]):
            run = coral_procs.coral("exec", *targeting, "--", "true", env=colony.operator_env)
            assert run.returncode == 0, run.stderr
        started = _records(colony, "started")
        assert [(r["provenance"], r["node"]) for r in started] == [
            ("explicit", socket.gethostname()), ("agent", socket.gethostname())]
    finally:
        agent.stop()


def test_discovery_records_carry_runtime_and_field_changes_are_recorded(tmp_path, colony):
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="vm-2", services=[
        {"name": "api", "port": 18102, "health": {"endpoint": "/healthz"}}]).start()
    try:
        coral_procs.wait_registered(colony, ["vm-2"])
        (added,) = [r for event, r in _api(colony) if event == "added"]
        assert added["runtime"] == "RUNTIME_MODE_NATIVE"
        agent.stop()
        body = yaml.safe_load(agent.config_path.read_text())
        body["services"][0]["health"]["endpoint"] = "/ready"  # same service, a field changes
        agent.config_path.write_text(yaml.safe_dump(body))
        agent.start()
        coral_procs.wait_for(lambda: any(e == "changed" for e, _ in _api(colony)),
                             timeout=20, what="the change recorded")
        (changed,) = [r for event, r in _api(colony) if event == "changed"]
        (service,) = [s for s in changed["changed"] if s["component_name"] == "api"]
        assert service["health_endpoint"] == "/ready"
        assert changed["runtime"] == "RUNTIME_MODE_NATIVE"
        assert [e for e, _ in _api(colony)] == ["added", "changed"]
    finally:
        agent.stop()
