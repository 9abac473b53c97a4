"""Direct unit tests of the coral.mesh.coral connection plugin's pure helpers (issue 15):
file chunking and how a target is named."""

from __future__ import annotations

import base64

import pytest

from coral_lib.operator import targeting
from tests.plugins.conftest import plugin


@pytest.fixture(scope="module")
def conn():
    return plugin("connection.coral")


@pytest.mark.parametrize("requested", [1, 2, 3, 4, 1000, 90000, 10**6])
def test_connection_chunks_are_whole_base64_groups_below_the_cap(conn, requested):
    size = conn.chunk_size(requested)
    assert size >= 3 and size % 3 == 0  # chunks concatenate to one valid base64 stream
    assert len(base64.b64encode(b"x" * size)) <= conn.MAX_ARG
    assert size <= max(3, requested)


def test_connection_target_text_names_only_what_is_set(conn):
    assert conn.target_text(targeting.build(agent="web-1")) == "web-1"
    assert conn.target_text(targeting.build(agent="node-a", namespace="shop", pod="shop-1",
                                            container="app")) == "node-a/shop/shop-1/app"

