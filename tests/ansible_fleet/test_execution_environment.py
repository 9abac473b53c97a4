"""Issue 6, AWX: meta/execution-environment.yml and the ansible-builder definition stay in
step with coral-lib's own dependencies (a drift check; building an image needs a container
engine, which CI does not have)."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.ansible_fleet.conftest import ROOT


def _names(lines: list[str]) -> set[str]:
    return {re.split(r"[<>=!~ \[;]", line.strip(), maxsplit=1)[0].lower()
            for line in lines if line.strip() and not line.lstrip().startswith("#")}


def test_ee_python_requirements_cover_coral_lib_dependencies():
    meta = yaml.safe_load((ROOT / "meta/execution-environment.yml").read_text())
    assert meta["version"] == 1
    reqs = (ROOT / meta["dependencies"]["python"]).read_text().splitlines()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _names(project["dependencies"]) == _names(reqs)
    bindep = (ROOT / meta["dependencies"]["system"]).read_text()
    assert "tcpdump" in bindep


def test_builder_definition_installs_the_collection_and_coral_lib():
    ee = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert ee["version"] == 3
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    names = [c["name"] for c in ee["dependencies"]["galaxy"]["collections"]]
    assert f"collections/coral-mesh-{version}.tar.gz" in names and "kubernetes.core" in names
    assert ee["additional_build_files"][0]["src"].endswith(f"coral-mesh-{version}.tar.gz")
    steps = " ".join(ee["additional_build_steps"]["append_final"])
    assert "pip install" in steps and "ansible_collections/coral/mesh" in steps
