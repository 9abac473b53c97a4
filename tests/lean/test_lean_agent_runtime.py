"""Issue 15, "A leaner agent": "keep heavy validation off the agent's run-time path without
losing the quality of config errors" and "load tap/trace/pty/bcc only when used", read
from running agents.

A real `coral agent start` (the CLI entry production runs: `coral` is
`coral_lib.cli:main`) registers with a real colony as a host agent here, and as a sidecar
in a real pod in tests/sidecar_agent/test_lean_sidecar.py; once registered it is asked
(through the few lines of PROBE in front of `cli.main`, the only shortcut) for its
sys.modules. The config was validated by the pydantic models in a forked child
(coral_lib.config.view), so the agent holds none of pydantic, the models or YAML; the
shell and tap backends load only when an operation needs them. ops.trace is loaded:
registration reports whether tracing is available (it imports only the standard library).
What each lever bought: bench/bench_agent_levers.py.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import pytest

from coral_lib.config import view
from tests.support import coral_procs

NEVER_AT_RUN_TIME = (
    "pydantic", "pydantic_core", "yaml", "coral_lib.config.models", "coral_lib.config.loader",
    "coral_lib.yamlfile", "coral_lib.ops.tap", "coral_lib.ops.pty_session",
    "coral_lib.ops.bpf_filter", "coral_lib.ops.pcap", "termios", "bcc", "http.client",
    "email.message", "coral_lib.colony", "coral_lib.client",
)

# The only shortcut: these lines in front of `cli.main` write sys.modules to
# $CORAL_TEST_MODULES_OUT once the test creates the file named by it plus ".ask".
PROBE = """
import json, os, sys, threading, time
def dump():
    out = os.environ["CORAL_TEST_MODULES_OUT"]
    while not os.path.exists(out + ".ask"):
        time.sleep(0.1)
    with open(out + ".tmp", "w") as handle:
        json.dump(sorted(sys.modules), handle)
    os.rename(out + ".tmp", out)
threading.Thread(target=dump, daemon=True).start()
from coral_lib import cli
sys.exit(cli.main())
"""


def modules_of(out: pathlib.Path) -> set[str]:
    """Ask the running agent started with PROBE for its sys.modules."""
    (out.parent / (out.name + ".ask")).touch()
    coral_procs.wait_for(out.exists, timeout=10, what="the agent's module list")
    return set(json.loads(out.read_text()))


def test_registered_host_agent_holds_no_pydantic_yaml_tap_or_pty(colony, tmp_path):
    out = tmp_path / "modules.json"
    agent = coral_procs.Agent(tmp_path / "agent", colony, agent_id="lean-host",
                              services=[{"name": "api", "port": 8080}])
    agent.command = (sys.executable, "-c", PROBE)
    agent.env = {**os.environ, "CORAL_AGENT_MODE": "host", "CORAL_TEST_MODULES_OUT": str(out)}
    agent.start()
    try:
        try:
            coral_procs.wait_registered(colony, ["lean-host"], timeout=60)
        except TimeoutError:
            raise AssertionError(f"agent not registered; its log:\n{agent.log()[-3000:]}") \
                from None
        modules = modules_of(out)
    finally:
        agent.stop()
    assert "coral_lib.agent.runner" in modules  # the probe read a running agent
    assert "coral_lib.config.view" in modules
    assert sorted(modules.intersection(NEVER_AT_RUN_TIME)) == []


def test_config_errors_keep_their_text_through_the_child(tmp_path):
    """The forked validation raises the loader's own ConfigError: same class, same line."""
    from coral_lib import config

    path = tmp_path / "agent.yaml"
    path.write_text("agent: {mode: sleepy}\ncolony: {address: 127.0.0.1:9443}\n")
    with pytest.raises(config.ConfigError) as direct:
        config.load_agent_config(path)
    with pytest.raises(view.ConfigError) as forked:
        view.load_agent_config(path)
    assert type(forked.value) is type(direct.value)
    assert str(forked.value) == str(direct.value)
    assert "agent.mode" in str(forked.value)


def test_the_view_reads_as_the_models_do(tmp_path, monkeypatch):
    """Every field, property and secret of a validated config survives the trip."""
    from coral_lib import config

    path = tmp_path / "agent.yaml"
    path.write_text(
        "agent: {id: a1, labels: {__dict__: x, team: web}}\n"
        "colony: {address: '127.0.0.1:9443', joinToken: s3cret}\n"
        "discovery: {kubernetes: {includeNamespaces: [shop]}}\n"
        "overrides: [{selector: {podLabel: 'app=api'}, service: {name: api, port: 80}}]\n"
        "services: [{name: web, port: 8080, health: {endpoint: /h, interval: 3s}}]\n")
    model, plain = config.load_agent_config(path), view.load_agent_config(path)
    assert view.rebuild(view.plain(model)) == plain
    assert plain._source == model._source == str(path)
    assert plain.agent.labels == {"__dict__": "x", "team": "web"}
    assert plain.colony.join_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(plain)
    assert view.join_token(plain) == config.join_token(model) == "s3cret"
    assert plain.discovery.kubernetes.include_namespaces == ("shop",)
    assert plain.overrides[0].selector.pod_label_pair == ("app", "api")
    assert plain.services[0].health.interval == 3.0
    changed = plain.model_copy(update={"agent": plain.agent.model_copy(update={"mode": "active"})})
    assert (changed.agent.mode, plain.agent.mode, changed._source) == ("active", "passive",
                                                                       str(path))
    with pytest.raises(AttributeError):
        plain.agent.id = "other"
