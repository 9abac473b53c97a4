"""Fixtures: the Coral image (built once per run) and a private containerd that has it."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support import containerd
from tests.support.image import agent_image  # noqa: F401 - the shared session fixture


def _why_not() -> str:
    missing = [b for b in ("containerd", "containerd-shim-runc-v2", "runc", "ctr")
               if shutil.which(b) is None]
    if missing:
        return f"missing {', '.join(missing)} (tools/setup.sh)"
    return "" if os.geteuid() == 0 else "containerd needs root"


@pytest.fixture(scope="module")
def node(tmp_path_factory, agent_image):  # noqa: F811 - pytest fixture injection
    """A private containerd with busybox, pause and the Coral image imported."""
    if _why_not():
        pytest.skip(f"containerd cannot run here: {_why_not()}")
    with containerd.Containerd(tmp_path_factory.mktemp("image-cri")) as runtime:
        agent_image.import_into(runtime)
        yield runtime
