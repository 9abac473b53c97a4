"""Config fuzz (issue 7 resilience): random YAML against every loader -> a value or a clear
error (the loader's own error type, naming the file), never any other exception; and the
`coral` commands given broken files exit with a message, never a traceback.

Loaders: agent config, colony settings, override file, RBAC policy, colony policy settings,
webhook injector settings, webhook namespace-labels file.
CORAL_CONFIG_FUZZ_EXAMPLES scales the examples per loader (default 300).
"""

from __future__ import annotations

import atexit
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coral_lib import config
from coral_lib.colony import policy, rbac
from coral_lib.commands import webhook as webhook_cmd
from coral_lib.webhook import settings as settings_mod

EXAMPLES = int(os.environ.get("CORAL_CONFIG_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
ENV = {"NODE_NAME": "n1"}

# Every key any of the loaders knows, so random documents reach deep validation paths.
KEYS = ["agent", "mode", "id", "runtime", "colony", "address", "caFile", "secret", "secretFile",
        "discovery", "kubernetes", "host", "includeNamespaces", "includeLabels",
        "excludeNamespaces", "excludeLabels", "pollInterval", "resyncInterval", "overrides",
        "selector", "service", "podLabel", "namespace", "podName", "process", "port",
        "services", "name", "health", "endpoint", "interval", "type", "labels", "listen",
        "dataDir", "rules", "groups", "subjects", "identities", "verbs", "scopes", "env",
        "node", "requireApproval", "observeOnly", "rateLimits", "perIdentity", "perTarget",
        "approvalTTL", "tapHeadersOnly", "image", "kubernetes_version", "colony_address",
        "secret_name", "resources", "cpu", "memory", "coral.io/inject", "true", "false"]
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
           | st.sampled_from(["30s", "5m", "-1s", "x=y", "{{ NODE_NAME }}", "{{ MISSING }}",
                              "1.29", "v1.30.1", "exec", "read", "*", "10/s", "1.2.3.4:5",
                              "~", "&a", "*a", "!!python/object:os.system"]))
keys = st.sampled_from(KEYS) | st.text(max_size=10) | st.integers() | st.booleans()
structures = st.recursive(
    scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=5),
    max_leaves=30)
documents = (structures.map(lambda d: yaml.safe_dump(d).encode())
             | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
             | st.binary(max_size=200))

_DIR = pathlib.Path(tempfile.mkdtemp(prefix="coral-resilience-config-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)  # made at import: no fixture owns it


def _policy_settings(path):
    return policy.load_settings(str(path))


LOADERS = {  # name -> (call, the clear error types it may raise)
    "agent_config": (lambda p: config.load_agent_config(p, environ=ENV), config.ConfigError),
    "colony_config": (lambda p: config.load_colony_config(p, environ=ENV), config.ConfigError),
    "override_file": (lambda p: config.load_override_file(p, environ=ENV), config.ConfigError),
    "rbac_policy": (rbac.load_policy, rbac.PolicyError),
    "colony_policy_settings": (_policy_settings, rbac.PolicyError),
    "webhook_settings": (lambda p: webhook_cmd._settings_file(str(p)), settings_mod.SettingsError),
    "webhook_namespace_labels": (lambda p: webhook_cmd._labels_file(str(p)), ValueError),
}


def check(name: str, content: bytes) -> None:
    load, clear = LOADERS[name]
    path = _DIR / f"{name}.yaml"
    path.write_bytes(content)
    try:
        load(path)
    except clear as exc:
        message = str(exc)
        assert str(path) in message, f"{name}: error does not name the file: {message!r}"
        assert "Traceback" not in message
    # any other exception propagates and fails the test, with hypothesis' minimal example


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_config_fuzz_every_loader_gives_value_or_clear_error(name: str) -> None:
    """Issue 7 resilience: config fuzz, random YAML against every loader."""
    given(documents)(FUZZ(lambda content: check(name, content)))()


NASTY = {
    "not_yaml": b"agent: [unclosed\n  - {\n",
    "binary": b"\x00\xff\xfe garbage \x80",
    "wrong_types": b"agent: 5\ncolony: [1, 2]\nservices: {a: b}\nlisten: 7\n",
    "deep": b"a: " + b"[" * 3000 + b"]" * 3000 + b"\n",
    "list_top": b"- 1\n- 2\n",
}
COMMANDS = {
    "colony_start_config": ["colony", "start", "--config", "{path}", "--data-dir", "{tmp}/d"],
    "colony_start_policy": ["colony", "start", "--policy", "{path}", "--data-dir", "{tmp}/d",
                            "--listen", "127.0.0.1:1"],
    "agent_start_config": ["agent", "start", "--config", "{path}", "--state-dir", "{tmp}/s",
                           "--socket", "{tmp}/a.sock"],
    "webhook_serve_settings": ["webhook", "serve", "--settings", "{path}", "--cert", "{tmp}/c",
                               "--key", "{tmp}/k", "--listen", "127.0.0.1:1"],
}


@pytest.mark.parametrize("case", sorted(NASTY))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_config_fuzz_cli_says_what_is_wrong_never_a_traceback(tmp_path, command, case) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(NASTY[case])
    argv = [a.format(path=path, tmp=tmp_path) for a in COMMANDS[command]]
    proc = subprocess.run([sys.executable, "-m", "coral_lib.cli", *argv], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode != 0, f"{command} accepted {case}: {proc.stdout[-500:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip(), f"{command} failed on {case} without saying why"
