"""Fixtures for the process supervisor tests: a temp run dir and cleanup of leftovers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from coral_lib import supervise


@pytest.fixture
def run_dir(tmp_path):
    """A directory for pid/log files; any supervisor still holding a pid file is stopped."""
    yield tmp_path
    for pid_file in tmp_path.glob("*.pid"):
        supervise.stop(str(pid_file))


@pytest.fixture
def coral_cli():
    """Run `coral ...` as a real subprocess (the interpreter running the tests)."""

    def run(*args: str, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "coral_lib.cli", *args], capture_output=True, text=True,
            check=check, timeout=60,
        )

    return run
