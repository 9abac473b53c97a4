"""Issue 14, 1. Images: builds are reproducible -- the same inputs give the same layer
digests (and the same config and manifest digests). Builds the image a second time from
nothing (its own buildah storage: the Debian base is made again with mmdebstrap) and
compares it with the run's shared image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile

import pytest

from tests.support import image


def _manifest(archive) -> dict:
    with tarfile.open(archive) as tar:
        (entry,) = json.load(tar.extractfile("index.json"))["manifests"]
        blob = tar.extractfile("blobs/sha256/" + entry["digest"].split(":", 1)[1])
        return {"digest": entry["digest"], **json.load(blob)}


@pytest.mark.slow
def test_same_inputs_give_the_same_layer_digests(agent_image, tmp_path):
    env = {**os.environ, "CORAL_IMAGE_DIR": str(tmp_path / "again")}
    try:
        done = subprocess.run(["bash", str(image.SCRIPT), "--force"], cwd=image.ROOT, env=env,
                              capture_output=True, text=True, timeout=image.BUILD_TIMEOUT)
        assert done.returncode == 0, done.stderr[-3000:]
        again = json.loads(done.stdout.strip().splitlines()[-1])
        first, second = _manifest(agent_image.archive), _manifest(again["archive"])
    finally:
        shutil.rmtree(tmp_path / "again", ignore_errors=True)
    assert again["key"] == agent_image.key
    assert [layer["digest"] for layer in second["layers"]] == \
        [layer["digest"] for layer in first["layers"]]
    assert second["config"]["digest"] == first["config"]["digest"]
    assert second["digest"] == first["digest"]
