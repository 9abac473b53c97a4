"""Issue 15: "operator.connect is the one connection builder" -- from arguments, CORAL_*
variables and the local data directory, for the CLI, the modules and both plugins."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from coral_lib import errors
from coral_lib.operator import connect
from tests.support import coral_procs

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _sources():
    for folder in ("coral_lib", "plugins"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "_proto" not in path.parts:
                yield path


def test_operator_connect_is_the_one_connection_builder():
    """No front end builds a client itself or keeps its own default address or local
    data directory: client.connect() is called only by coral_lib.operator.connect."""
    home = ROOT / "coral_lib/operator/connect.py"
    offenders = []
    for path in _sources():
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "connect"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "client"
                    and path != home):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} calls client.connect")
        if path != home and re.search(r"^\s*DEFAULT_ADDRESS\s*=", text, re.M):
            offenders.append(f"{path.relative_to(ROOT)} defines DEFAULT_ADDRESS")
        if path != home and re.search(r"(environ\.get\(|environ\[|getenv\()[\"']"
                                      r"CORAL_(COLONY_ADDRESS|CA_FILE|TOKEN|COLONY_DATA_DIR)",
                                      text):
            offenders.append(f"{path.relative_to(ROOT)} reads a CORAL_* connection variable")
        if path != home and re.search(r"def (_local_data_dir|read_token)\b", text):
            offenders.append(f"{path.relative_to(ROOT)} keeps its own copy of a connect helper")
    assert not offenders, offenders


def test_connect_settings_arguments_beat_variables_beat_the_local_colony(tmp_path):
    local = tmp_path / "colony"
    local.mkdir()
    (local / "admin.token").write_text("local-token\n")
    (tmp_path / "file.token").write_text("file-token\n")
    env = {"CORAL_COLONY_DATA_DIR": str(local)}

    plain = connect.resolve(environ=env)
    assert (plain.address, plain.ca_file, plain.token) == (
        connect.DEFAULT_ADDRESS, str(local / "ca.crt"), "local-token")

    env.update(CORAL_COLONY_ADDRESS="colony.example:1", CORAL_CA_FILE="/env/ca.crt",
               CORAL_TOKEN_FILE=str(tmp_path / "file.token"))
    from_env = connect.resolve(environ=env)
    assert (from_env.address, from_env.ca_file, from_env.token) == (
        "colony.example:1", "/env/ca.crt", "file-token")

    env["CORAL_TOKEN"] = "env-token"
    assert connect.resolve(environ=env).token == "env-token"  # a token beats a token file

    given = connect.resolve(address="other:2", ca_file="/arg/ca.crt", token=" arg-token ",
                            environ=env)
    assert (given.address, given.ca_file, given.token) == ("other:2", "/arg/ca.crt",
                                                           "arg-token")
    assert "arg-token" not in repr(given)  # the token stays out of logs and tracebacks


def test_connect_without_a_token_is_a_config_error_naming_the_file(tmp_path):
    env = {"CORAL_COLONY_DATA_DIR": str(tmp_path / "nowhere")}
    with pytest.raises(errors.ConfigError) as missing:
        connect.resolve(environ=env)
    assert str(tmp_path / "nowhere" / "admin.token") in str(missing.value)
    assert missing.value.kind == "ConfigError" and isinstance(missing.value, errors.CoralError)

    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    with pytest.raises(errors.ConfigError, match=f"operator token file {empty} is empty"):
        connect.resolve(token_file=str(empty), environ=env)


@pytest.fixture
def running_colony(tmp_path):
    colony = coral_procs.Colony(tmp_path / "colony").start()
    yield colony
    colony.stop()


def test_connect_reaches_a_real_colony_from_the_local_data_directory_alone(running_colony,
                                                                           monkeypatch):
    """Only CORAL_COLONY_DATA_DIR (and the address) set: the CA and admin token come from
    the colony's data directory, over real TLS on loopback."""
    for name in ("CORAL_CA_FILE", "CORAL_TOKEN", "CORAL_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CORAL_COLONY_DATA_DIR", str(running_colony.data_dir))
    monkeypatch.setenv("CORAL_COLONY_ADDRESS", running_colony.address)
    with connect.connect() as colony:
        assert colony.whoami() == "admin"
        assert colony.address == running_colony.address

    with pytest.raises(errors.Unauthenticated) as refused:
        connect.connect(token="not-a-token").whoami()
    assert refused.value.kind == "Unauthenticated" and refused.value.code == "UNAUTHENTICATED"
