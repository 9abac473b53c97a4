"""Make this checkout importable as the collection (ansible_collections.coral.mesh), the way
ansible-test's units do, so the plugins' pure helpers can be tested directly."""

from __future__ import annotations

import importlib
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def collection_on_path(tmp_path_factory):
    base = tmp_path_factory.mktemp("collections")
    (base / "ansible_collections" / "coral").mkdir(parents=True)
    (base / "ansible_collections" / "coral" / "mesh").symlink_to(ROOT)
    sys.path.insert(0, str(base))
    importlib.invalidate_caches()
    yield base
    sys.path.remove(str(base))


def plugin(name: str):
    """Import plugins/<name> of this checkout, e.g. plugin("module_utils.coral")."""
    return importlib.import_module(f"ansible_collections.coral.mesh.plugins.{name}")
