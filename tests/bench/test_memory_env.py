"""Closing note, "The `memory` bench starts the host agent without `MALLOC_ARENA_MAX=2`,
although the systemd unit sets it": the bench runs each agent with the environment its
deployment gives it, read from where the deployment defines it. These never run the bench.
"""

from __future__ import annotations

import pathlib
import shlex

import jinja2
import yaml

from bench import bench_memory
from coral_lib.webhook import inject

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _rendered_unit_environment() -> dict[str, str]:
    """The Environment= lines of the host agent's unit as the role renders it: the template
    (roles/colony/templates/coral.service.j2) with the variables the agent role's "Run the
    agent" task passes."""
    tasks = yaml.safe_load((ROOT / "roles/agent_host/tasks/present.yml").read_text())
    passed = next(t for t in tasks if t.get("name") == "Run the agent")["vars"]
    role_vars = yaml.safe_load((ROOT / "roles/agent_host/vars/main.yml").read_text())
    expression = passed["_coral_environment"]  # e.g. "{{ _coral_agent_environment }}"
    name = expression.strip("{} ")
    assert expression == "{{ " + name + " }}" and name in role_vars, expression
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["quote"] = shlex.quote
    unit = env.from_string((ROOT / "roles/colony/templates/coral.service.j2").read_text())
    text = unit.render(ansible_managed="managed", _coral_description="Coral agent",
                       _coral_environment=role_vars[name], _coral_argv=["coral", "agent"],
                       _coral_sandbox=[])
    lines = [line.removeprefix("Environment=") for line in text.splitlines()
             if line.startswith("Environment=")]
    return dict(line.split("=", 1) for line in lines)


def test_memory_bench_host_agent_gets_the_units_environment(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    unit = _rendered_unit_environment()
    assert unit == {"MALLOC_ARENA_MAX": "2"}  # what README's "Allocator" paragraph states
    assert bench_memory.unit_environment() == unit
    env = bench_memory.host_agent_env()
    assert {name: env.get(name) for name in unit} == unit


def test_memory_bench_host_agent_environment_overrides_the_callers(monkeypatch):
    """systemd does not pass the caller's environment: the unit's value wins."""
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert bench_memory.host_agent_env()["MALLOC_ARENA_MAX"] == "2"


def test_memory_bench_sidecar_gets_the_injected_allocator_setting():
    allocator = inject.allocator_env()
    assert bench_memory.sidecar_agent_env() == {allocator["name"]: allocator["value"]}


def test_daemonset_agent_runs_with_the_manifests_process_settings():
    """bench_agent_rss (the `memory` bench's DaemonSet agent) started `coral agent node`
    without the DaemonSet's PYTHONOPTIMIZE=2 and allocator setting; it now takes them from
    the rendered manifest's container env."""
    from bench import bench_agent_rss
    from coral_lib.manifests import daemonset, settings

    container = daemonset.daemon_set(settings.ManifestSettings())["spec"]["template"]["spec"][
        "containers"][0]
    literal = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    tuning = bench_agent_rss.manifest_tuning_env()
    assert tuning == {"PYTHONOPTIMIZE": literal["PYTHONOPTIMIZE"],
                      "MALLOC_ARENA_MAX": literal["MALLOC_ARENA_MAX"]}
    assert tuning["PYTHONOPTIMIZE"] == "2"
    assert not any(name.startswith("CORAL_") for name in tuning)
