"""Issue 15, Structure: "One source for the injector settings (today manifests/settings.py
re-declares the webhook's twelve fields) and for the image name default."
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib

import pytest
import yaml

import coral_lib
from coral_lib.manifests import settings as manifest_settings
from coral_lib.webhook import settings as inject_settings

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _declared_fields(path: pathlib.Path, class_name: str) -> set[str]:
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    return {s.target.id for s in cls.body
            if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}


def test_manifest_settings_do_not_redeclare_the_injector_fields():
    inject = {f.name for f in dataclasses.fields(inject_settings.InjectSettings)}
    redeclared = inject & _declared_fields(ROOT / "coral_lib/manifests/settings.py",
                                           "ManifestSettings")
    assert not redeclared, f"declare these once, in coral_lib/webhook/settings.py: {redeclared}"


def test_manifest_settings_carry_every_injector_field_with_its_default():
    manifest = manifest_settings.ManifestSettings()
    assert manifest.inject_settings() == inject_settings.InjectSettings()
    settable = manifest_settings.settable()
    for field in dataclasses.fields(inject_settings.InjectSettings):
        assert field.name in settable, field.name  # `--set` reaches every injector field


def test_an_injector_value_error_is_a_manifest_error():
    with pytest.raises(manifest_settings.ManifestError, match="image_pull_policy"):
        manifest_settings.build({"image_pull_policy": "Sometimes"})
    with pytest.raises(manifest_settings.ManifestError, match="kubernetes_version"):
        manifest_settings.build({"kubernetes_version": "latest"})


def test_the_image_default_has_one_home():
    assert inject_settings.DEFAULT_IMAGE == f"coral/agent:{coral_lib.__version__}"
    assert inject_settings.InjectSettings().image == inject_settings.DEFAULT_IMAGE
    assert inject_settings.InjectSettings().agent_version == coral_lib.__version__
    # The Ansible roles cannot import Python: their defaults must say the same.
    roles = {
        "roles/agent_daemonset/defaults/main.yml": "coral_daemonset_image",
        "roles/sidecar_webhook/defaults/main.yml": "coral_webhook_image",
    }
    for path, key in roles.items():
        assert yaml.safe_load((ROOT / path).read_text())[key] == inject_settings.DEFAULT_IMAGE
        specs = yaml.safe_load((ROOT / path.replace("defaults/main", "meta/argument_specs"))
                               .read_text())
        options = specs["argument_specs"]["main"]["options"]
        assert options[key]["default"] == inject_settings.DEFAULT_IMAGE, path
