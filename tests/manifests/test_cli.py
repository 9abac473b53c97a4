"""`coral manifests render` (issue 5): yaml/json output, --set, --tls-dir, clear errors."""

from __future__ import annotations

import json

import pytest
import yaml

from coral_lib import cli
from tests.webhook import conftest as webhook_conftest


def _render(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["manifests", "render", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("mode", ["daemonset", "webhook", "sidecar"])
def test_render_yaml_validates(capsys, mode: str) -> None:
    code, out, _ = _render(capsys, "--mode", mode)
    assert code == 0
    for obj in yaml.safe_load_all(out):
        webhook_conftest.validate_schema(obj)


def test_render_json_list_with_sets(capsys) -> None:
    code, out, _ = _render(capsys, "--mode", "daemonset", "--set", "observe_only=true",
                           "--set", "namespace=obs", "-o", "json")
    assert code == 0
    listing = json.loads(out)
    assert listing["kind"] == "List"
    assert {o["metadata"].get("namespace") for o in listing["items"]} >= {"obs"}
    assert "SYS_PTRACE" not in out


def test_tls_dir_is_generated_once_and_reused(capsys, tmp_path) -> None:
    folder = tmp_path / "tls"
    first = _render(capsys, "--mode", "webhook", "--tls-dir", str(folder))[1]
    second = _render(capsys, "--mode", "webhook", "--tls-dir", str(folder))[1]
    assert first == second
    assert sorted(p.name for p in folder.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    (folder / "tls.key").unlink()
    code, _, err = _render(capsys, "--mode", "webhook", "--tls-dir", str(folder))
    assert code == 2 and "not all" in err


@pytest.mark.parametrize("argv,message", [
    (["--set", "nope=1"], "KEY one of"), (["--set", "webhook_replicas=two"], "whole number"),
    (["--set", "failure_policy=Sometimes"], "Ignore, Fail"), (["--set", "novalue"], "KEY=VALUE"),
])
def test_bad_set_exits_2_with_message(capsys, argv, message) -> None:
    code, _, err = _render(capsys, "--mode", "webhook", *argv)
    assert code == 2 and message in err
