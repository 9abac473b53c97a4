"""Fixtures: skip with the reason where bcc cannot load programs; a probe binary to exec."""

from __future__ import annotations

import shutil
import uuid

import pytest

from coral_lib.ops import trace


@pytest.fixture(scope="session")
def bcc_works():
    ok, reason = trace.available()
    if not ok:
        pytest.skip(f"{reason} (run tools/setup_bcc.sh once)")


@pytest.fixture
def probe(tmp_path):
    """A uniquely named copy of /bin/true: its exec events are unmistakable."""
    path = tmp_path / f"coral-probe-{uuid.uuid4().hex[:8]}"
    shutil.copy("/bin/true", path)
    return path
