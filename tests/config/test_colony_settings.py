"""Colony settings file, and resolving the agent's join token (joinToken or joinTokenFile)."""

from __future__ import annotations

import os
import pathlib

import pytest

from coral_lib import config


def test_colony_settings_good_file(testdata):
    settings = config.load_colony_config(testdata / "colony.yaml",
                                         environ={"CERT_TTL": "2h"})
    assert settings.id == "prod"
    assert settings.agent_cert_ttl == 7200.0
    assert settings.agent_service_account == "coral/agents"
    assert settings.listen == "0.0.0.0:9443"
    assert settings.data_dir == "/var/lib/coral/colony"
    assert (settings.heartbeat_interval, settings.degraded_after, settings.unhealthy_after) == (
        5.0, 20.0, 60.0)
    assert settings.tokens_file == "/etc/coral/tokens.yaml"
    assert settings.observe_only is True


def test_colony_settings_defaults():
    settings = config.load_colony_config(None, environ={})
    assert settings.listen == "127.0.0.1:9443"
    home = str(pathlib.Path.home() / ".coral" / "colony")
    assert settings.data_dir == ("/var/lib/coral/colony" if os.geteuid() == 0 else home)
    assert settings.degraded_after < settings.unhealthy_after
    assert settings.observe_only is False


def test_bad_input_colony_unhealthy_not_after_degraded(write_config):
    path = write_config("degradedAfter: 1m\nunhealthyAfter: 30s\n", name="colony.yaml")
    with pytest.raises(config.ConfigError, match=f"config file {path}: key unhealthyAfter: "
                       r"unhealthyAfter \(30s\) must be longer than degradedAfter \(60s\)"):
        config.load_colony_config(path, environ={})


def test_bad_input_colony_unknown_key_lists_accepted(write_config):
    path = write_config("listen: 127.0.0.1:1\ndatadir: /x\n", name="colony.yaml")
    with pytest.raises(config.ConfigError) as caught:
        config.load_colony_config(path, environ={})
    assert f"config file {path}: key datadir: unknown key 'datadir'" in str(caught.value)
    assert "dataDir" in str(caught.value) and "heartbeatInterval" in str(caught.value)


def test_bad_input_colony_listen_not_host_port(write_config):
    path = write_config("listen: 9443\n", name="colony.yaml")
    with pytest.raises(config.ConfigError, match="key listen: invalid address '9443': "
                       "expected host:port"):
        config.load_colony_config(path, environ={})


def test_join_token_from_file(tmp_path, write_config):
    token = tmp_path / "token"
    token.write_text("from-file\n")
    path = write_config(f"colony:\n  joinTokenFile: {token}\n")
    assert config.join_token(config.load_agent_config(path, environ={})) == "from-file"


def test_join_credential_missing_is_a_clear_error(write_config):
    path = write_config("agent:\n  id: a\n")
    cfg = config.load_agent_config(path, environ={})
    assert config.join_token(cfg) == ""  # an agent holding a certificate needs none
    with pytest.raises(config.ConfigError, match=f"{path}: key colony.joinToken: no join "
                       "credential: set joinToken, joinTokenFile"):
        config.check_bootstrap(cfg)


def test_join_token_file_unreadable_names_the_file(tmp_path, write_config):
    path = write_config(f"colony:\n  joinTokenFile: {tmp_path / 'absent'}\n")
    cfg = config.load_agent_config(path, environ={})
    with pytest.raises(config.ConfigError, match=f"key colony.joinTokenFile: cannot read "
                       f"{tmp_path / 'absent'}"):
        config.join_token(cfg)


def test_service_account_token_file_empty_is_an_error(tmp_path):
    (tmp_path / "s").write_text("")
    cfg = config.load_agent_config(
        None, environ={"CORAL_SERVICE_ACCOUNT_TOKEN_FILE": str(tmp_path / "s")})
    with pytest.raises(config.ConfigError, match="key colony.serviceAccountTokenFile: .* is empty"):
        config.service_account_token(cfg)


def test_colony_settings_reject_the_shared_secret(write_config):
    path = write_config("secretFile: /x\n", name="colony.yaml")
    with pytest.raises(config.ConfigError, match="agents no longer share a colony secret"):
        config.load_colony_config(path, environ={})
