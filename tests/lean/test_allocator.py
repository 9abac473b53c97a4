"""Issue 15, "A leaner agent": allocator settings. Every agent runs with MALLOC_ARENA_MAX=2
(what it buys is recorded by bench/bench_agent_levers.py): the DaemonSet manifest, the
injected sidecar (tests/webhook goldens show it in place), and the host agent's systemd
unit and supervisor, through the role's _coral_environment; the colony keeps glibc's
default."""

from __future__ import annotations

import pathlib

import yaml

from coral_lib import manifests
from coral_lib.manifests import settings as settings_mod
from coral_lib.webhook import inject

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_daemonset_agent_runs_with_two_malloc_arenas():
    objects = manifests.render("daemonset", settings_mod.build({}))
    (ds,) = [o for o in objects if o["kind"] == "DaemonSet"]
    (agent,) = ds["spec"]["template"]["spec"]["containers"]
    assert _env(agent)["MALLOC_ARENA_MAX"] == "2"
    assert inject.allocator_env() == {"name": "MALLOC_ARENA_MAX", "value": "2"}


def test_host_agent_unit_and_supervisor_get_the_environment_colony_does_not():
    agent = yaml.safe_load((ROOT / "roles/agent_host/tasks/present.yml").read_text())
    run = next(t for t in agent if t.get("name") == "Run the agent")
    assert run["vars"]["_coral_environment"] == "{{ _coral_agent_environment }}"
    role_vars = yaml.safe_load((ROOT / "roles/agent_host/vars/main.yml").read_text())
    assert role_vars["_coral_agent_environment"] == {"MALLOC_ARENA_MAX": "2"}
    colony = (ROOT / "roles/colony/tasks/present.yml").read_text()
    assert "_coral_environment" not in colony
    unit = (ROOT / "roles/colony/templates/coral.service.j2").read_text()
    assert "Environment={{ name }}={{ value }}" in unit
    daemon = yaml.safe_load((ROOT / "roles/colony/tasks/service_daemon.yml").read_text())
    start = next(t for t in daemon if "daemon_start" in str(t.get("register")))
    assert start["environment"] == "{{ _coral_environment | default({}) }}"
