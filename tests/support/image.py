"""The Coral image (Containerfile) built once per test run and shared by every test.

Interface (kept stable for other tests; use it, do not rebuild the image yourself):

* `agent_image` -- pytest fixture, session scope. Returns an `AgentImage` built by
  tools/build_image.sh (cached by a content hash of its inputs under build/image, so a
  run builds it at most once and later runs reuse it). Skips the test when the build
  tools are missing (`tools/setup.sh` installs them) or not root. To use it, import it in
  a conftest.py: `from tests.support.image import agent_image  # noqa: F401`.
* `AgentImage.archive` -- the OCI archive (pathlib.Path), `AgentImage.ref` -- the full
  reference `docker.io/coral/agent:<version>`, which is what the manifests' default image
  `coral/agent:<version>` expands to, so rendered manifests run it unchanged.
  Also `version`, `revision` (git commit in the OCI labels), `key` (the input hash).
* `AgentImage.import_into(node)` -- import into a `tests.support.containerd.Containerd`
  (its k8s.io namespace, where CRI looks) and wait until CRI sees it; returns `ref`.
  Idempotent per containerd.
* `build(force=False)` -- the same without pytest (bench/, scripts).

The image runs as root by default (the agents); the webhook is run as uid 65532 (user
`coral` in the image) with a read-only root filesystem by its manifest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import time

import pytest

from coral_lib._proto.cri.runtime.v1 import api_pb2
from tests.support import locks

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "build_image.sh"
TOOLS = ("buildah", "mmdebstrap", "ctr")
WEBHOOK_UID = 65532
BUILD_TIMEOUT = 1200.0


@dataclasses.dataclass(frozen=True)
class AgentImage:
    archive: pathlib.Path
    ref: str
    base_name: str
    tag: str
    version: str
    revision: str
    key: str

    def import_into(self, node, *, timeout: float = 60.0) -> str:
        """Import into a private containerd (tests.support.containerd.Containerd)."""
        if node.images.get("coral-agent") == self.ref:
            return self.ref
        argv = ["ctr", "--address", node.socket, "-n", "k8s.io", "images", "import",
                "--base-name", self.base_name, str(self.archive)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
        deadline = time.monotonic() + timeout
        request = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=self.ref))
        # CRI learns about images imported with ctr from containerd events, a moment later.
        while not node.images_service.ImageStatus(request, timeout=5).image.id:
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRI does not see imported image {self.ref}")
            time.sleep(0.05)
        node.images["coral-agent"] = self.ref
        return self.ref


def why_not() -> str:
    """Why the image cannot be built here ('' when it can)."""
    if os.geteuid() != 0:
        return "building the image needs root (buildah vfs storage, chroot isolation)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (run tools/setup.sh)"
    return ""


def build(*, force: bool = False) -> AgentImage:
    """Run tools/build_image.sh (a cache hit when nothing changed) and describe the result."""
    argv = ["bash", str(SCRIPT), *(["--force"] if force else [])]
    with locks.exclusive(locks.IMAGE):  # parallel workers: one build, then cache hits
        result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                                timeout=BUILD_TIMEOUT)
    if result.returncode != 0:
        raise RuntimeError(f"tools/build_image.sh failed ({result.returncode}):\n"
                           f"{result.stderr[-4000:]}")
    meta = json.loads(result.stdout.strip().splitlines()[-1])
    return AgentImage(archive=pathlib.Path(meta["archive"]), ref=meta["ref"],
                      base_name=meta["base_name"], tag=meta["tag"], version=meta["version"],
                      revision=meta["revision"], key=meta["key"])


@pytest.fixture(scope="session")
def agent_image() -> AgentImage:
    """The Coral image, built once per run (see the module docstring)."""
    reason = why_not()
    if reason:
        pytest.skip(f"the Coral image cannot be built here: {reason}")
    return build()
