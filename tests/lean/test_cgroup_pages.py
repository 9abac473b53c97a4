"""Issue 15, "DaemonSet agent with 110 pods <= 45 MB": tools/cgroup_pages.py names the
files whose page cache a cgroup is charged for (how the DaemonSet agent's charge was
attributed). A real cgroup, a real read by a process in it; root and a memory controller
are needed, as in production diagnosis."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import uuid

import pytest

from tools import cgroup_pages

SIZE = 4 << 20


def _memory_root() -> pathlib.Path | None:
    for candidate in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup"):
        path = pathlib.Path(candidate)
        if (path / "memory.usage_in_bytes").exists() or (
                path / "cgroup.controllers").exists() and "memory" in (
                path / "cgroup.subtree_control").read_text():
            return path
    return None


@pytest.fixture
def cgroup():
    root = _memory_root()
    if os.geteuid() != 0 or root is None or not os.path.exists("/proc/kpagecgroup"):
        pytest.skip("needs root, a memory cgroup controller and /proc/kpagecgroup")
    path = root / f"coral-test-pages-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    yield path
    path.rmdir()


def test_names_the_file_a_cgroup_read_and_counts_it_once(cgroup, tmp_path):
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(SIZE))
    os.sync()
    os.posix_fadvise(fd := os.open(blob, os.O_RDONLY), 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    # a child joins the cgroup and reads the file: its pages are charged there
    code = (f"import pathlib; pathlib.Path({str(cgroup / 'cgroup.procs')!r})"
            f".write_text(str(__import__('os').getpid())); "
            f"pathlib.Path({str(blob)!r}).read_bytes()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    ino = os.stat(cgroup).st_ino
    files = cgroup_pages.by_file(ino, [str(tmp_path), str(tmp_path)])  # twice: once counted
    if not files:
        pytest.skip(f"{tmp_path} keeps no page cache to measure (tmpfs?)")
    assert set(files) == {str(blob)}
    assert SIZE // 2 <= files[str(blob)] * cgroup_pages.PAGE <= SIZE
    kinds = cgroup_pages.by_kind(ino)
    unmapped = sum(v for k, v in kinds.items() if k.startswith("file, unmapped"))
    assert unmapped >= files[str(blob)] * 9 // 10
    os.posix_fadvise(fd := os.open(blob, os.O_RDONLY), 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)  # uncharge, so the cgroup can be removed


def test_kind_reads_kpageflags_bits():
    assert cgroup_pages.kind(cgroup_pages.ANON | cgroup_pages.LRU) == "anon"
    assert cgroup_pages.kind(cgroup_pages.LRU | cgroup_pages.PRIVATE).startswith("file, buffer")
    assert cgroup_pages.kind(cgroup_pages.LRU | cgroup_pages.MMAP | cgroup_pages.ACTIVE) == \
        "file, mapped, active"
    assert cgroup_pages.kind(0).startswith("not on an LRU")
