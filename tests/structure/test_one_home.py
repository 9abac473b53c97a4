"""One home for each piece of logic (STYLE.md, "One home for each concern"): defects carried
in the closing note's "Noticed, not done", found by reading the source so that a copy coming
back fails here.

* "`discovery_record._key` repeats the service key format": the key
  (namespace/pod/container/name:port) is written once, convert.service_key.
* "`remove_agent` keeps its own transaction block": the registry opens, commits and rolls
  back a write transaction in one place, Registry._transaction.
"""

from __future__ import annotations

import ast
import pathlib
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[2]
KEY_PARTS = {"namespace", "pod_name", "container_name", "component_name", "port"}


def _names_in(node: ast.AST) -> set[str]:
    """Attribute names and string constants a formatted value reads (msg.port, s.get('port'))."""
    out: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute):
            out.add(sub.attr)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            out.add(sub.value)
    return out


def service_key_formats(source: str) -> int:
    """How many f-strings in `source` format all five parts of a service key."""
    return sum(KEY_PARTS <= set().union(*(_names_in(v) for v in node.values
                                         if isinstance(v, ast.FormattedValue)))
               for node in ast.walk(ast.parse(source)) if isinstance(node, ast.JoinedStr))


def test_service_key_format_has_one_home():
    where = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / "coral_lib").rglob("*.py"))
             if "_proto" not in p.parts and (n := service_key_formats(p.read_text()))}
    assert where == {"coral_lib/convert.py": 1}


def test_service_key_finder_sees_a_copy():
    """The finder itself: the copy discovery_record._key used to hold is seen."""
    copy = textwrap.dedent("""\
        def _key(service):
            return (f"{service.get('namespace', '')}/{service.get('pod_name', '')}/"
                    f"{service.get('container_name', '')}/{service.get('component_name', '')}:"
                    f"{service.get('port', 0)}")
        """)
    assert service_key_formats(copy) == 1


def test_registry_has_one_transaction_block():
    source = (ROOT / "coral_lib/colony/registry.py").read_text()
    assert source.count('"BEGIN IMMEDIATE"') == 1
    assert source.count('"ROLLBACK"') == 1 and source.count('"COMMIT"') == 1
