"""Hostile YAML (issue 10, "Secrets and hygiene"): duplicate keys, alias bombs and zero
intervals are refused quickly with an error naming the file, the key and the line."""

from __future__ import annotations

import time

import pytest

from coral_lib import config, yamlfile
from coral_lib.colony import rbac

BILLION_LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    + ["agent: {id: x}"]) + "\n"


def test_review_duplicate_yaml_keys_no_longer_silently_win(write_config):
    path = write_config("agent:\n  id: first\ncolony:\n  id: c\nagent:\n  id: second\n")
    with pytest.raises(config.ConfigError) as caught:
        config.load_agent_config(path, environ={})
    message = str(caught.value)
    assert str(path) in message
    assert "duplicate key 'agent' at line 5 (first given at line 1)" in message


def test_duplicate_nested_key_in_a_policy_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("rules:\n  - name: r\n    verbs: [read]\n    verbs: ['*']\n"
                    "    identities: [a]\n")
    with pytest.raises(rbac.PolicyError, match=r"duplicate key 'verbs' at line 4"):
        rbac.load_policy(path)


@pytest.mark.timeout(10)
def test_review_billion_laughs_config_is_refused_quickly(write_config):
    path = write_config(BILLION_LAUGHS)
    start = time.monotonic()
    with pytest.raises(config.ConfigError, match="expand to more than"):
        config.load_agent_config(path, environ={})
    assert time.monotonic() - start < 2


@pytest.mark.timeout(10)
def test_recursive_alias_is_refused():
    with pytest.raises(yamlfile.YamlFileError, match="refers to a node that contains it"):
        yamlfile.parse("a: &a [1, *a]\n", source="loop.yaml")


def test_shared_aliases_and_merge_keys_still_work():
    doc = yamlfile.parse("base: &b {x: 1}\none: *b\ntwo:\n  <<: *b\n  x: 2\n", source="ok.yaml")
    assert doc == {"base": {"x": 1}, "one": {"x": 1}, "two": {"x": 2}}


@pytest.mark.parametrize("key, yaml_text", [
    pytest.param("discovery.host.pollInterval", "discovery: {host: {pollInterval: 0}}",
                 id="host-pollInterval-0"),
    pytest.param("discovery.kubernetes.pollInterval",
                 "discovery: {kubernetes: {pollInterval: 0s}}", id="k8s-pollInterval-0s"),
    pytest.param("discovery.kubernetes.resyncInterval",
                 "discovery: {kubernetes: {resyncInterval: 0ms}}", id="resyncInterval-0ms"),
    pytest.param("services[0].health.interval",
                 "services: [{name: a, port: 80, health: {interval: 0}}]", id="health-interval-0"),
])
def test_review_poll_interval_zero_is_refused(write_config, key, yaml_text):
    with pytest.raises(config.ConfigError) as caught:
        config.load_agent_config(write_config(yaml_text + "\n"), environ={})
    assert f"key {key}" in str(caught.value) and "above zero" in str(caught.value)


@pytest.mark.parametrize("field", ["heartbeatInterval", "degradedAfter", "approvalTtl"])
def test_colony_intervals_of_zero_are_refused(write_config, field):
    path = write_config(f"{field}: 0\n", name="colony.yaml")
    with pytest.raises(config.ConfigError, match="above zero"):
        config.load_colony_config(path, environ={})


def test_zero_interval_from_the_environment_is_refused():
    with pytest.raises(config.ConfigError, match="above zero"):
        config.load_agent_config(None, environ={"CORAL_POLL_INTERVAL": "0"})
