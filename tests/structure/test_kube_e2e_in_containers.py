"""Issue 14 acceptance: "no e2e in the Kubernetes modes runs the agent outside a container
any more". The Kubernetes-mode e2e tests (tests/kube_e2e) run agents only as pods from the
project's image; every other test that starts a DaemonSet or sidecar agent (or its
backends) as a plain process says so: its module or its folder's conftest.py docstring
carries "COMPONENT TEST" and names the shortcut and where the e2e lives."""

from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
# The helpers that run a Kubernetes-mode agent, or its backends, as a plain process.
PLAIN_PROCESS = re.compile(r"\b(NodeAgentProc|node_agents|NodeAgent|SidecarAgent|run_in_pod)\b")
HELPER_HOMES = {"tests/support/podharness.py"}  # defines run_in_pod; runs no agent itself


def _docstring(path: pathlib.Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


def _python_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_kube_e2e_runs_no_agent_as_a_plain_process():
    offenders = [str(p.relative_to(ROOT)) for p in _python_files(TESTS / "kube_e2e")
                 if PLAIN_PROCESS.search(p.read_text()) or "podharness" in p.read_text()]
    assert not offenders, offenders


def test_tests_running_kubernetes_mode_agents_as_plain_processes_say_component_test():
    unmarked = []
    for path in _python_files(TESTS):
        rel = str(path.relative_to(ROOT))
        if rel in HELPER_HOMES or path.parent.name in ("structure", "kube_e2e"):
            continue
        if not PLAIN_PROCESS.search(path.read_text()):
            continue
        conftest = path.parent / "conftest.py"
        docs = _docstring(path) + (_docstring(conftest) if conftest.exists() else "")
        if "COMPONENT TEST" not in docs:
            unmarked.append(rel)
    assert not unmarked, unmarked
