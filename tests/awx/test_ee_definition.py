"""Issue 16, item 12: the EE the tests run is the shipped execution-environment.yml with only
what an offline build must change (tools/ee_definition.py): base image, package manager,
Python venv, Galaxy collections from local directories, and the wheelhouse. Everything
else — dependencies, the coral.mesh tarball, the final build steps — is the shipped file's."""

from __future__ import annotations

import pathlib

import yaml

from tools import ee_definition

ROOT = pathlib.Path(__file__).resolve().parents[2]


def local() -> tuple[dict, dict]:
    shipped = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    return shipped, ee_definition.local_definition(
        shipped, shipped_dir=str(ROOT), base_image="localhost/coral-ee-base:k",
        collection_dirs={"kubernetes.core": "kubernetes.core"})


def test_local_definition_changes_only_what_an_offline_build_needs():
    shipped, built = local()
    assert built["images"] == {"base_image": {"name": "localhost/coral-ee-base:k"}}
    assert built["options"]["package_manager_path"] == "/usr/bin/true"
    for key in ("ansible_core", "ansible_runner"):
        assert built["dependencies"][key] == shipped["dependencies"][key]
    steps = built["additional_build_steps"]
    for stage, lines in shipped["additional_build_steps"].items():
        assert steps[stage][-len(lines):] == lines  # shipped steps kept, after ours
    files = {item["dest"]: item["src"] for item in built["additional_build_files"]}
    for item in shipped["additional_build_files"]:
        assert files[item["dest"]] == str(ROOT / item["src"])


def test_galaxy_names_become_local_dirs_and_files_stay():
    shipped, built = local()
    names = {c["name"]: c for c in built["dependencies"]["galaxy"]["collections"]}
    assert names["collections/kubernetes.core"] == {"name": "collections/kubernetes.core",
                                                    "type": "dir"}
    for entry in shipped["dependencies"]["galaxy"]["collections"]:
        if entry.get("type") == "file":
            assert names[entry["name"]] == entry
