"""Issue 15, Structure: the config split and the import layers.

* "`config.py` (610 lines, four jobs) split into pure models and an I/O loader; the pure
  `overrides`/`selection` modules stop importing file loaders. The YAML loader rejects
  duplicate keys and bounds alias expansion." -- the last sentence is covered by
  tests/config/test_yaml_hostile.py (test_review_duplicate_yaml_keys_no_longer_silently_win,
  test_review_billion_laughs_config_is_refused_quickly, test_recursive_alias_is_refused).
* "Break the `ops <-> discovery` and `ops <-> runtime` import cycles and add an
  import-linter `layers` contract so they stay broken."
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"]


def test_import_contracts_hold():
    out = subprocess.run([str(pathlib.Path(sys.executable).with_name("lint-imports"))],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]


def test_layers_contract_keeps_ops_above_discovery_and_runtime():
    layers = [c["layers"] for c in _contracts() if c["type"] == "layers"]
    assert layers, "no import-linter layers contract in pyproject.toml"
    order = layers[0]
    assert order.index("coral_lib.ops") < order.index("coral_lib.discovery") \
        < order.index("coral_lib.runtime")


def test_pure_modules_are_forbidden_the_config_loader():
    forbidden = [c for c in _contracts() if c["type"] == "forbidden"
                 and "coral_lib.config.loader" in c["forbidden_modules"]]
    sources = {m for c in forbidden for m in c["source_modules"]}
    assert {"coral_lib.selection", "coral_lib.overrides", "coral_lib.config.models"} <= sources


def test_config_models_read_no_files():
    tree = ast.parse((ROOT / "coral_lib/config/models.py").read_text())
    calls = {node.func.attr if isinstance(node.func, ast.Attribute) else
             getattr(node.func, "id", "") for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert not calls & {"open", "read_text", "read_bytes", "load", "read_file"}, calls
    imported = {alias.name for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert "yamlfile" not in imported and "loader" not in imported


def test_config_package_keeps_the_old_import_working():
    from coral_lib import config
    from coral_lib.config import loader, models
    assert config.AgentConfig is models.AgentConfig
    assert config.load_agent_config is loader.load_agent_config
    assert config.ConfigError is models.ConfigError


def test_one_shared_colony_fixture():
    """"Tests: one root `tests/conftest.py` with the shared colony fixture (defined
    identically in four conftests today)." Directories override `colony_args` instead."""
    defined = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("conftest.py")
                     if "\ndef colony(" in p.read_text())
    assert defined == ["tests/conftest.py"]
