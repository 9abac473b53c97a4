"""Fixtures: the recorded /proc trees under testdata/<case>/ and a detect() over one."""

from __future__ import annotations

import json
import pathlib

import pytest

from coral_lib import runtime

TESTDATA = pathlib.Path(__file__).parent / "testdata"
CASES = sorted(p.name for p in TESTDATA.iterdir() if (p / "case.json").exists())


def case_meta(name: str) -> dict:
    return json.loads((TESTDATA / name / "case.json").read_text())


def detect_case(name: str, **overrides) -> runtime.RuntimeContext:
    """detect() with every path pointed into the case's tree."""
    root = TESTDATA / name
    meta = case_meta(name)
    kwargs = dict(
        proc_root=str(root / "proc"), sys_root=str(root / "sys"), environ=meta["env"],
        sa_dir=str(root / "serviceaccount"),
        cri_sockets=[str(root / "run/containerd/containerd.sock"), str(root / "run/crio.sock")],
    )
    return runtime.detect(**{**kwargs, **overrides})


@pytest.fixture(params=CASES)
def case(request) -> str:
    return request.param
