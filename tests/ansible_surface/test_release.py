"""Issue 16, Ansible surface items 7 and 8: the collection artifact as shipped -- LICENSE
and a changelog with a release summary in it, development files out of it, an ansible-test
ignore file for every ansible-core version requires_ansible admits, and the bundled
coral-lib the same version as the collection."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tarfile

import pytest
import yaml

import coral_lib
from tests.ansible_surface.conftest import BIN, ROOT


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> tarfile.TarFile:
    out = tmp_path_factory.mktemp("artifact")
    run = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", str(ROOT),
                          "--output-path", str(out)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    with tarfile.open(next(out.glob("coral-mesh-*.tar.gz"))) as tar:
        yield tar


def test_item8_artifact_holds_license_and_changelog_and_no_development_files(artifact):
    names = set(artifact.getnames())
    assert {"LICENSE", "CHANGELOG.rst", "changelogs/changelog.yaml", "meta/runtime.yml",
            "coral_lib/__init__.py", "pyproject.toml"} <= names
    for dev in ("tools", "Makefile", "constraints.txt", "requirements-dev.txt", "molecule",
                "tests", "bench", "Containerfile", "proto", ".ansible-lint"):
        assert not any(n == dev or n.startswith(dev + "/") for n in names), dev
    assert not any(n.endswith(".egg-info") or n.startswith("build/") for n in names)
    changelog = yaml.safe_load(artifact.extractfile("changelogs/changelog.yaml").read())
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    assert changelog["releases"][version]["changes"]["release_summary"].strip()


def test_item8_an_ignore_file_for_every_admitted_ansible_core_version():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import sanity_ignores
    finally:
        sys.path.pop(0)
    spec = yaml.safe_load((ROOT / "meta/runtime.yml").read_text())["requires_ansible"]
    versions = sanity_ignores.admitted_versions(spec)
    assert "2.19" in versions  # the ansible-core this repository tests with
    have = sorted(p.name for p in (ROOT / "tests/sanity").glob("ignore-*.txt"))
    assert have == sorted(f"ignore-{v}.txt" for v in versions)
    assert sanity_ignores.main(["--check"]) == 0, "run python tools/sanity_ignores.py"
    for name in have:  # every ignore says why, and names a file that exists
        for line in (ROOT / "tests/sanity" / name).read_text().splitlines():
            path, rest = line.split(" ", 1)
            assert (ROOT / path).is_file() and " # " in rest, line


def test_item7_bundled_coral_lib_is_the_collection_version():
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    project = (ROOT / "pyproject.toml").read_text()
    assert coral_lib.__version__ == version and f'version = "{version}"' in project


def test_item7_roles_install_from_a_copy_never_the_collection_itself():
    for role in ("colony", "agent_host"):
        defaults = yaml.safe_load((ROOT / f"roles/{role}/defaults/main.yml").read_text())
        assert defaults["coral_lib_copy_source"] is True, role


def test_tools_sanity_checks_the_artifact_as_shipped():
    script = (ROOT / "tools/sanity.sh").read_text()
    assert 'rm -rf "$COLLECTION/coral_lib"' not in script
    assert pathlib.Path(ROOT / "tools/sanity_ignores.py").is_file()
