"""Fixtures for config loading tests: testdata paths and a writer for ad-hoc files."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import pytest

TESTDATA = pathlib.Path(__file__).parent / "testdata"


@pytest.fixture
def testdata() -> pathlib.Path:
    return TESTDATA


@pytest.fixture
def write_config(tmp_path: pathlib.Path) -> Callable[..., pathlib.Path]:
    """Write text (str) or bytes to a file under tmp_path and return its path."""

    def write(content: str | bytes, name: str = "agent-config.yaml") -> pathlib.Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return write
