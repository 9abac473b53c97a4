"""The changelog fragments are what antsibull-changelog builds the release notes from: a
fragment it cannot read (a YAML item that parses as a mapping because of a ': ') fails the
release step, so it fails here first."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _lint(root: pathlib.Path) -> subprocess.CompletedProcess:
    tool = shutil.which("antsibull-changelog") or str(
        pathlib.Path(sys.executable).parent / "antsibull-changelog")
    return subprocess.run([tool, "lint"], cwd=root, capture_output=True, text=True, timeout=120)


def test_changelog_fragments_lint_clean():
    result = _lint(ROOT)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_lint_refuses_a_fragment_item_that_is_a_mapping(tmp_path):
    """The defect this guards against: an item 'colony - checks: keys ...' is a mapping."""
    shutil.copytree(ROOT / "changelogs", tmp_path / "changelogs")
    shutil.copy(ROOT / "galaxy.yml", tmp_path / "galaxy.yml")
    (tmp_path / "changelogs/fragments/bad.yml").write_text(
        "---\nminor_changes:\n  - colony - cheaper checks: service keys skip redaction.\n")
    result = _lint(tmp_path)
    assert "bad.yml" in result.stdout + result.stderr
