"""coral.mesh.coral_manifest (issue 5: objects for GitOps users), run by real `ansible`:
the same objects as coral_lib.manifests.render, `dest` written with changed semantics,
check mode writes nothing, a stable webhook certificate from tls_dir, clear errors."""

from __future__ import annotations

import json
import os
import subprocess

import yaml

from coral_lib import manifests
from coral_lib.manifests import settings as settings_mod
from tests.ansible_k8s.conftest import PYTHON, REPO


def module(args: dict, *, check: bool = False) -> dict:
    argv = [str(REPO / ".venv" / "bin" / "ansible"), "localhost", "-o",
            "-m", "coral.mesh.coral_manifest", "-a", json.dumps(args),
            "-e", f"ansible_python_interpreter={PYTHON}"]
    if check:
        argv.append("--check")
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ANSIBLE_LOCALHOST_WARNING": "0"})
    line = next(x for x in proc.stdout.splitlines() if x.startswith("localhost"))
    status, _, body = line.partition("=>")
    return {**json.loads(body), "failed": "FAILED" in status}


def test_objects_dest_changed_semantics_and_check_mode(tmp_path):
    dest = tmp_path / "ds.yaml"
    args = {"mode": "daemonset", "settings": {"observe_only": True}, "dest": str(dest)}
    result = module(args, check=True)
    assert result["changed"] is True and not dest.exists()

    result = module(args)
    want = manifests.render("daemonset", settings_mod.build({"observe_only": True}))
    assert result["changed"] is True and not result["failed"] and result["objects"] == want
    assert list(yaml.safe_load_all(dest.read_text())) == want
    assert dest.stat().st_mode & 0o777 == 0o600

    assert module(args)["changed"] is False


def test_webhook_certificate_is_kept_in_tls_dir(tmp_path):
    args = {"mode": "webhook", "tls_dir": str(tmp_path / "tls")}
    first = module(args)
    assert first["tls_generated"] is True and first["changed"] is True
    second = module(args)
    assert second["tls_generated"] is False and second["changed"] is False
    assert second["objects"] == first["objects"]


def test_bad_settings_name_the_key_and_what_is_accepted():
    result = module({"mode": "webhook", "settings": {"failure_policy": "Sometimes"}})
    assert result["failed"] and "failure_policy" in result["msg"] and "Ignore" in result["msg"]
    result = module({"mode": "daemonset", "settings": {"colour": "blue"}})
    assert result["failed"] and "settings.colour is not a setting" in result["msg"]
