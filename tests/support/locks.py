"""Cross-process locks for the few things parallel test workers (pytest-xdist, tools/test.sh)
must not do at the same time: building from this checkout in place (setuptools writes
build/lib and *.egg-info at the root, and the image, EE and host wheelhouse builds share
their caches under build/). A lock is an flock on a file under build/locks, released when
the `with` block ends or the process dies; the descriptor is not inherited by subprocesses
(PEP 446), so a daemon started inside the block cannot keep it held."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIR = ROOT / "build" / "locks"

# One name per shared thing. Every in-place build of the checkout (`pip wheel .`) takes
# SOURCE_BUILD: nspawn.wheelhouse here, the wheelhouse steps of tools/build_image.sh and
# tools/build_ee.sh with flock(1) on the same file.
SOURCE_BUILD = "source-build"
IMAGE = "image"  # tests/support/image.build: the run's image, cached under build/image
HOSTS_ROOTFS = "hosts-rootfs"  # nspawn.rootfs: mmdebstrap into build/hosts


@contextlib.contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Hold the lock `name` (waits, without a timeout: the holder's own timeouts bound it)."""
    DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(DIR / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the flock
