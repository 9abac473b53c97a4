"""Issue 2 acceptance: config loading, good and bad files (file + key path + accepted values)."""

from __future__ import annotations

import pathlib

import pytest

from coral_lib import config
from tests.config import conftest

BAD = conftest.TESTDATA / "bad"


def test_good_file_issue_example_loads_exactly_in_the_documented_shape(testdata):
    cfg = config.load_agent_config(testdata / "issue-example.yaml", environ={"NODE_NAME": "n7"})
    assert cfg.agent.mode == "passive"
    assert cfg.agent.id == "node-agent-n7"
    k8s = cfg.discovery.kubernetes
    assert k8s.include_namespaces == ("payments", "checkout")
    assert k8s.include_labels == {"coral.io/enabled": "true"}
    assert k8s.exclude_namespaces == ("kube-system",)
    assert k8s.poll_interval == 30.0
    (rule,) = cfg.overrides
    assert rule.selector.pod_label_pair == ("app", "payments-api")
    assert rule.service.name == "payments-api"
    assert rule.service.health.endpoint == "/healthz"
    assert rule.service.health.interval == 5.0
    assert rule.service.type == "http"
    (svc,) = cfg.services
    assert (svc.name, svc.port, svc.health.endpoint, svc.type) == ("api", 8080, "/health", "http")


def test_good_file_every_key_is_read_into_snake_case_attributes(testdata):
    cfg = config.load_agent_config(testdata / "full.yaml", environ={"HOST": "h1"})
    assert (cfg.agent.mode, cfg.agent.id, cfg.agent.runtime) == ("active", "agent-h1", "daemonset")
    assert cfg.colony.address == "colony.example:9443"
    assert cfg.colony.ca_file == "/etc/coral/ca.pem"
    assert cfg.colony.id == "prod"
    assert cfg.colony.join_token_file == "/etc/coral/join-token"
    k8s = cfg.discovery.kubernetes
    assert k8s.exclude_labels == {"coral.io/skip": "yes"}
    assert (k8s.poll_interval, k8s.resync_interval) == (90.0, 3600.0)
    assert cfg.discovery.host.poll_interval == 0.5
    sel = cfg.overrides[0].selector
    assert (sel.namespace, sel.pod_name, sel.process, sel.port) == (
        "payments", "payments-*", "java", 8080)
    assert cfg.overrides[0].service.port == 8081
    assert cfg.overrides[0].service.labels == {"team": "pay"}
    assert cfg.services[0].health.interval == 10.0
    assert cfg.services[0].labels == {"tier": "web", "version": "2"}


@pytest.mark.parametrize("name", ["empty.yaml", "comments-only.yaml", "null-sections.yaml"])
def test_empty_file_gives_defaults(testdata, name):
    cfg = config.load_agent_config(testdata / name, environ={})
    assert cfg.model_dump() == config.load_agent_config(None, environ={}).model_dump()
    assert cfg.agent.mode == "passive" and cfg.agent.runtime == "auto"
    assert cfg.agent.id  # the host name
    assert cfg.colony.address == "127.0.0.1:9443"
    assert cfg.discovery.kubernetes.poll_interval == 30.0
    assert cfg.overrides == () and cfg.services == ()


def test_no_path_means_defaults_plus_environment():
    cfg = config.load_agent_config(None, environ={"CORAL_AGENT_ID": "a1"})
    assert cfg.agent.id == "a1"


# (file, key path named in the message, what is accepted / wrong, named in the message)
BAD_CASES = [
    ("unknown-key.yaml", "discovery.kubernetes.pollIntervl", "accepted keys here: "
     "includeNamespaces, includeLabels, excludeNamespaces, excludeLabels, pollInterval"),
    ("snake-case-key.yaml", "discovery.kubernetes.poll_interval", "unknown key"),
    ("wrong-type-port.yaml", "services[0].port", "valid integer"),
    ("wrong-type-section.yaml", "agent", "expected a mapping with keys mode, id, runtime, labels"),
    ("services-not-list.yaml", "services", "should be a list"),
    ("bad-agent-mode.yaml", "agent.mode", "'passive' or 'active'"),
    ("bad-agent-runtime.yaml", "agent.runtime", "'auto', 'host', 'daemonset' or 'sidecar'"),
    ("bad-duration.yaml", "discovery.kubernetes.pollInterval", "units ms, s, m, h"),
    ("negative-duration.yaml", "discovery.host.pollInterval", "not negative"),
    ("missing-placeholder.yaml", "agent.id", "environment variable NODE_NAME"),
    ("override-bad-pod-label.yaml", "overrides[2].selector.podLabel", "expected key=value"),
    ("override-empty-selector.yaml", "overrides[0].selector", "at least one of podLabel"),
    ("override-missing-service.yaml", "overrides[0].service", "required key 'service'"),
    ("unquoted-bool-label.yaml", "discovery.kubernetes.includeLabels['coral.io/enabled']",
     'quote it, e.g. "true"'),
    ("missing-service-name.yaml", "services[0].name", "required key 'name' is missing"),
    ("port-out-of-range.yaml", "services[0].port", "less than or equal to 65535"),
    ("bad-colony-address.yaml", "colony.address", "expected host:port"),
    ("two-secrets.yaml", "colony", "only one of colony.joinToken and colony.joinTokenFile"),
    ("bad-health-endpoint.yaml", "services[0].health.endpoint", "a path like /healthz"),
]


@pytest.mark.parametrize(("name", "key", "accepted"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_names_file_key_path_and_accepted_values(name, key, accepted):
    with pytest.raises(config.ConfigError) as caught:
        config.load_agent_config(BAD / name, environ={})
    message = str(caught.value)
    assert f"config file {BAD / name}" in message
    assert f"key {key}:" in message
    assert accepted in message
    assert "\n" not in message and "Traceback" not in message
    assert caught.value.key == key


def test_bad_input_unknown_key_names_file_and_key():
    with pytest.raises(config.ConfigError, match=r"unknown-key\.yaml: key discovery\."
                       r"kubernetes\.pollIntervl: unknown key 'pollIntervl'"):
        config.load_agent_config(BAD / "unknown-key.yaml", environ={})


def test_bad_input_override_file_errors_name_the_entry_index():
    with pytest.raises(config.ConfigError, match=r"overrides\[2\]\.selector\.podLabel"):
        config.load_agent_config(BAD / "override-bad-pod-label.yaml", environ={})


def test_bad_input_missing_placeholder_variable_names_variable_and_key():
    with pytest.raises(config.ConfigError) as caught:
        config.load_agent_config(BAD / "missing-placeholder.yaml", environ={"OTHER": "x"})
    assert "{{ NODE_NAME }}" in str(caught.value) and "key agent.id" in str(caught.value)


def test_bad_input_invalid_yaml_names_line_and_column():
    with pytest.raises(config.ConfigError) as caught:
        config.load_agent_config(BAD / "invalid-yaml.yaml", environ={})
    assert str(caught.value).startswith(f"config file {BAD / 'invalid-yaml.yaml'}: invalid YAML")
    assert "line 3, column 5" in str(caught.value)


@pytest.mark.parametrize("name", ["top-level-list.yaml", "top-level-scalar.yaml"])
def test_bad_input_top_level_not_a_mapping(name):
    with pytest.raises(config.ConfigError, match="top level must be a mapping with keys "
                       "agent, colony, discovery, overrides, services"):
        config.load_agent_config(BAD / name, environ={})


def test_bad_input_missing_file_names_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(config.ConfigError, match=f"config file {missing}: file not found"):
        config.load_agent_config(missing, environ={})


def test_bad_input_unreadable_file_directory_names_the_file(tmp_path):
    with pytest.raises(config.ConfigError, match=f"config file {tmp_path}: is a directory"):
        config.load_agent_config(tmp_path, environ={})


def test_bad_input_unreadable_file_not_utf8(write_config):
    path = write_config(b"agent:\n  id: \xff\xfe\n")
    with pytest.raises(config.ConfigError, match=f"config file {path}: not UTF-8 text"):
        config.load_agent_config(path, environ={})


def test_bad_input_several_problems_reported_in_one_line(write_config):
    path = write_config("agent: {mode: x, runtime: y}\n")
    with pytest.raises(config.ConfigError) as caught:
        config.load_agent_config(path, environ={})
    assert "(and 1 more problem(s))" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_placeholders_fill_any_string_value_flow_block_and_quoted(write_config):
    path = write_config(
        'agent:\n  id: "{{NODE_NAME}}-{{ ZONE }}"\n'
        "services:\n  - {name: '{{ SVC }}', port: {{ PORT }}, labels: {zone: {{ ZONE }}}}\n"
        "# {{ IN_A_COMMENT }} is ignored\n"
    )
    env = {"NODE_NAME": "n1", "ZONE": "z", "SVC": "api", "PORT": "8080"}
    cfg = config.load_agent_config(path, environ=env)
    assert cfg.agent.id == "n1-z"
    assert (cfg.services[0].name, cfg.services[0].port) == ("api", 8080)
    assert cfg.services[0].labels == {"zone": "z"}


def test_placeholder_in_a_list_names_the_index(write_config):
    path = write_config("discovery:\n  kubernetes:\n    includeNamespaces: [a, '{{ NS }}']\n")
    with pytest.raises(config.ConfigError,
                       match=r"key discovery\.kubernetes\.includeNamespaces\[1\]: placeholder"):
        config.load_agent_config(path, environ={})


def test_config_error_has_file_key_and_problem_attributes():
    err = config.ConfigError("config file x.yaml", "agent.id", "bad")
    assert (err.source, err.key, err.problem) == ("config file x.yaml", "agent.id", "bad")
    assert str(err) == "config file x.yaml: key agent.id: bad"


def test_models_are_usable_from_code_with_snake_case_names():
    sel = config.OverrideSelector(pod_label="app=x")
    assert sel.pod_label_pair == ("app", "x")
    disc = config.KubernetesDiscovery(include_namespaces=["a"], poll_interval="5m")
    assert disc.include_namespaces == ("a",) and disc.poll_interval == 300.0


def test_secret_never_appears_in_repr_or_errors(write_config):
    cfg = config.load_agent_config(None, environ={"CORAL_COLONY_JOIN_TOKEN": "hunter2"})
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg)
    path = write_config("colony:\n  joinToken: [hunter2]\n")
    with pytest.raises(config.ConfigError) as caught:
        config.load_agent_config(path, environ={})
    assert "hunter2" not in str(caught.value) and "colony.joinToken" in str(caught.value)
    path = write_config("colony:\n  secret: hunter2\n")
    with pytest.raises(config.ConfigError) as caught:
        config.load_agent_config(path, environ={})
    assert "hunter2" not in str(caught.value) and "replaced by joinToken" in str(caught.value)


def test_format_path_quotes_keys_that_are_not_plain_names():
    assert config.format_path(("overrides", 2, "selector", "podLabel")) == \
        "overrides[2].selector.podLabel"
    assert config.format_path(("labels", "a.b/c")) == "labels['a.b/c']"


def test_load_accepts_pathlike_and_str(testdata):
    as_str = config.load_agent_config(str(testdata / "empty.yaml"), environ={})
    as_path = config.load_agent_config(pathlib.Path(testdata / "empty.yaml"), environ={})
    assert as_str.model_dump() == as_path.model_dump()
