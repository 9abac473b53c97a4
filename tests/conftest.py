"""Fixtures shared by every test directory.

`colony`: a real colony process on loopback TLS (tests/support/coral_procs.Colony), stopped
after the test. A directory changes how it starts by overriding `colony_args`, e.g. the
DaemonSet and sidecar tests point it at their API server fixture for TokenReview.
"""

from __future__ import annotations

import pytest

from tests.support import coral_procs


@pytest.fixture
def colony_args() -> tuple[str, ...]:
    """Extra `coral colony start` arguments for the `colony` fixture."""
    return ()


@pytest.fixture
def colony(tmp_path, colony_args):
    """A real colony process (coral_procs.Colony) under tmp_path/colony."""
    colony = coral_procs.Colony(tmp_path / "colony", args=colony_args).start()
    yield colony
    colony.stop()
