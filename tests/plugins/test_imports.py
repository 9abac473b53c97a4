"""Issue 15: "Plugins import only coral_lib library modules, never coral_lib.commands" --
checked over every file under plugins/."""

from __future__ import annotations

import ast
import importlib
import pathlib

from tests.plugins.conftest import ROOT


def _coral_imports(path: pathlib.Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return [n for n in names if n == "coral_lib" or n.startswith("coral_lib.")]


def test_plugins_import_only_coral_lib_library_modules_never_the_cli():
    files = sorted((ROOT / "plugins").rglob("*.py"))
    assert len(files) >= 9  # modules, module_utils, inventory, connection, doc_fragments
    found = {str(f.relative_to(ROOT)): _coral_imports(f) for f in files}
    bad = {f: [n for n in names if n.split(".")[1:2] in (["commands"], ["cli"])]
           for f, names in found.items()}
    assert not any(bad.values()), bad
    for names in found.values():  # and every one of them is a real library module or name
        for name in names:
            module, _, attr = name.rpartition(".")
            try:
                importlib.import_module(name)
            except ImportError:
                assert hasattr(importlib.import_module(module), attr), name
