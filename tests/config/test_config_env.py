"""Issue 2 acceptance: CORAL_* environment variables override file values (one table)."""

from __future__ import annotations

import pytest

from coral_lib import config

AGENT_CASES = [
    ("CORAL_AGENT_ID", "a-9", lambda c: c.agent.id, "a-9"),
    ("CORAL_AGENT_MODE", "sidecar", lambda c: c.agent.runtime, "sidecar"),
    ("CORAL_AGENT_HEALTH_MODE", "active", lambda c: c.agent.mode, "active"),
    ("CORAL_COLONY_ADDRESS", "10.0.0.1:7000", lambda c: c.colony.address, "10.0.0.1:7000"),
    ("CORAL_COLONY_ID", "prod", lambda c: c.colony.id, "prod"),
    ("CORAL_COLONY_JOIN_TOKEN", "t0ken", config.join_token, "t0ken"),
    ("CORAL_COLONY_JOIN_TOKEN_FILE", "/x/tok", lambda c: c.colony.join_token_file, "/x/tok"),
    ("CORAL_SERVICE_ACCOUNT_TOKEN_FILE", "/var/run/coral/token",
     lambda c: c.colony.service_account_token_file, "/var/run/coral/token"),
    ("CORAL_COLONY_CA_FILE", "/x/ca.pem", lambda c: c.colony.ca_file, "/x/ca.pem"),
    ("CORAL_COLONY_CA", "-----BEGIN CERTIFICATE-----", lambda c: c.colony.ca,
     "-----BEGIN CERTIFICATE-----"),
    ("CORAL_POLL_INTERVAL", "2m", lambda c: c.discovery.host.poll_interval, 120.0),
    ("CORAL_K8S_POLL_INTERVAL", "15s", lambda c: c.discovery.kubernetes.poll_interval, 15.0),
    ("CORAL_RESYNC_INTERVAL", "10m", lambda c: c.discovery.kubernetes.resync_interval, 600.0),
    ("CORAL_INCLUDE_NAMESPACES", "a, b", lambda c: c.discovery.kubernetes.include_namespaces,
     ("a", "b")),
    ("CORAL_EXCLUDE_NAMESPACES", "c", lambda c: c.discovery.kubernetes.exclude_namespaces,
     ("c",)),
    ("CORAL_INCLUDE_LABELS", "coral.io/enabled=true,tier=web",
     lambda c: c.discovery.kubernetes.include_labels, {"coral.io/enabled": "true", "tier": "web"}),
    ("CORAL_EXCLUDE_LABELS", "skip=yes", lambda c: c.discovery.kubernetes.exclude_labels,
     {"skip": "yes"}),
]


def test_env_table_is_covered_case_by_case():
    rejected = {"CORAL_COLONY_SECRET", "CORAL_COLONY_SECRET_FILE"}  # test below
    assert {c[0] for c in AGENT_CASES} | rejected == set(config.AGENT_ENV)


@pytest.mark.parametrize("var", ["CORAL_COLONY_SECRET", "CORAL_COLONY_SECRET_FILE"])
def test_env_shared_colony_secret_is_rejected_with_what_replaced_it(var):
    with pytest.raises(config.ConfigError, match="replaced by joinToken/joinTokenFile .* or "
                       "serviceAccountTokenFile"):
        config.load_agent_config(None, environ={var: "x"})
    with pytest.raises(config.ConfigError, match="no longer share a colony secret"):
        config.load_colony_config(None, environ={var: "x"})


@pytest.mark.parametrize(("var", "value", "read", "expected"), AGENT_CASES,
                         ids=[c[0] for c in AGENT_CASES])
def test_env_override_beats_file_value(testdata, var, value, read, expected):
    env = {"HOST": "h", var: value}
    if var == "CORAL_COLONY_JOIN_TOKEN":  # full.yaml sets joinTokenFile; only one may be set
        cfg = config.load_agent_config(None, environ=env)
    else:
        cfg = config.load_agent_config(testdata / "full.yaml", environ=env)
    assert read(cfg) == expected


def test_env_override_empty_variable_keeps_file_value(testdata):
    cfg = config.load_agent_config(testdata / "full.yaml",
                                   environ={"HOST": "h", "CORAL_AGENT_ID": ""})
    assert cfg.agent.id == "agent-h"


def test_env_override_bad_value_names_variable_file_and_key(testdata):
    path = testdata / "issue-example.yaml"
    with pytest.raises(config.ConfigError) as caught:
        config.load_agent_config(path, environ={"NODE_NAME": "n", "CORAL_POLL_INTERVAL": "soon"})
    message = str(caught.value)
    assert message.startswith(
        f"environment variable CORAL_POLL_INTERVAL (overriding config file {path}): "
        "key discovery.host.pollInterval: invalid duration 'soon'"
    )
    assert "500ms, 30s, 5m" in message


def test_env_override_bad_runtime_mode_lists_accepted_modes():
    with pytest.raises(config.ConfigError, match="CORAL_AGENT_MODE.*agent.runtime.*"
                       "'auto', 'host', 'daemonset' or 'sidecar'"):
        config.load_agent_config(None, environ={"CORAL_AGENT_MODE": "kubelet"})


def test_env_override_bad_label_list_names_variable():
    with pytest.raises(config.ConfigError, match="CORAL_INCLUDE_LABELS: key discovery.kubernetes"
                       ".includeLabels: invalid label 'tier'; expected k=v,k2=v2"):
        config.load_agent_config(None, environ={"CORAL_INCLUDE_LABELS": "a=b,tier"})


def test_env_override_into_null_section(write_config):
    path = write_config("agent:\ncolony:\n")
    cfg = config.load_agent_config(path, environ={"CORAL_AGENT_ID": "x", "CORAL_COLONY_ID": "c"})
    assert (cfg.agent.id, cfg.colony.id) == ("x", "c")


def test_env_override_onto_wrong_typed_section_reports_file_error(write_config):
    path = write_config("agent: 5\n")
    with pytest.raises(config.ConfigError, match="key agent: expected a mapping"):
        config.load_agent_config(path, environ={"CORAL_AGENT_ID": "x"})


def test_env_values_may_use_placeholders():
    cfg = config.load_agent_config(
        None, environ={"CORAL_AGENT_ID": "node-agent-{{ NODE_NAME }}", "NODE_NAME": "w1"})
    assert cfg.agent.id == "node-agent-w1"


def test_env_placeholder_missing_names_the_variable_that_set_it():
    with pytest.raises(config.ConfigError, match="environment variable CORAL_AGENT_ID.*key "
                       "agent.id: placeholder {{ NODE_NAME }}"):
        config.load_agent_config(None, environ={"CORAL_AGENT_ID": "a-{{ NODE_NAME }}"})


def test_environ_default_is_the_process_environment(monkeypatch):
    monkeypatch.setenv("CORAL_AGENT_ID", "from-os-environ")
    assert config.load_agent_config(None).agent.id == "from-os-environ"


COLONY_CASES = [
    ("CORAL_COLONY_ID", "prod", "id", "prod"),
    ("CORAL_AGENT_CERT_TTL", "2h", "agent_cert_ttl", 7200.0),
    ("CORAL_TOKEN_REVIEW_KUBECONFIG", "/k.yaml", "token_review_kubeconfig", "/k.yaml"),
    ("CORAL_COLONY_LISTEN", "0.0.0.0:1234", "listen", "0.0.0.0:1234"),
    ("CORAL_COLONY_DATA_DIR", "/data", "data_dir", "/data"),
    ("CORAL_COLONY_TOKENS_FILE", "/t.yaml", "tokens_file", "/t.yaml"),
    ("CORAL_COLONY_OBSERVE_ONLY", "true", "observe_only", True),
    ("CORAL_HEARTBEAT_INTERVAL", "2s", "heartbeat_interval", 2.0),
    ("CORAL_DEGRADED_AFTER", "40s", "degraded_after", 40.0),
    ("CORAL_UNHEALTHY_AFTER", "2m", "unhealthy_after", 120.0),
]


def test_colony_env_table_is_covered_case_by_case():
    rejected = {"CORAL_COLONY_SECRET", "CORAL_COLONY_SECRET_FILE"}
    assert {c[0] for c in COLONY_CASES} | rejected == set(config.COLONY_ENV)


@pytest.mark.parametrize(("var", "value", "attr", "expected"), COLONY_CASES,
                         ids=[c[0] for c in COLONY_CASES])
def test_colony_env_override(var, value, attr, expected):
    settings = config.load_colony_config(None, environ={var: value})
    assert getattr(settings, attr) == expected


def test_colony_agent_cert_ttl_is_bounded():
    with pytest.raises(config.ConfigError, match="agentCertTtl 5s: expected between 10s"):
        config.load_colony_config(None, environ={"CORAL_AGENT_CERT_TTL": "5s"})
