"""Fuzz verify_rows (the pure chain check): any edit of any column of any stored row, with
any value type SQLite can hold, is reported as bad and never crashes verify."""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coral_lib.colony import audit


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory):
    path = pathlib.Path(tmp_path_factory.mktemp("fuzz")) / "audit.db"
    log = audit.AuditLog(path)
    for i in range(20):
        log.append("event", {"i": i, "text": f"record {i}"})
    raw = log._db.execute(  # the stored rows exactly as verify reads them
        "SELECT seq, ts, kind, fields, prev_hash, hash FROM audit ORDER BY seq").fetchall()
    head = log.head()
    log.close()
    assert len(raw) == 20
    return raw, (head, audit.load_key(path.with_name("audit.key")))


sqlite_values = st.one_of(st.none(), st.integers(-5, 50), st.floats(allow_nan=False),
                          st.text(max_size=12), st.binary(max_size=8))


@settings(max_examples=300, deadline=None)
@given(pos=st.integers(0, 19), column=st.integers(0, 5), value=sqlite_values)
def test_any_single_edit_is_caught_and_never_crashes(chain, pos, column, value) -> None:
    raw, (head, key) = chain
    assert audit.verify_rows(raw, head, key=key).ok
    row = list(raw[pos])
    if row[column] == value:
        return
    row[column] = value
    rows = sorted([*raw[:pos], tuple(row), *raw[pos + 1:]],
                  key=lambda r: r[0] if isinstance(r[0], int) else -1)
    result = audit.verify_rows(rows, head, key=key)
    assert not result.ok and result.reason
