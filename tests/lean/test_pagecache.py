"""Issue 15, "A leaner agent": the page cache an agent filled while starting is given back
(coral_lib.pagecache), since a pod is charged for it (cgroup memory.current) though it is
never read again; what it buys is printed by bench/bench_pod_memory.py."""

from __future__ import annotations

import mmap
import os
import shutil
import subprocess
import sys

import pytest

from coral_lib import pagecache
from coral_lib.config import view

SIZE = 4 << 20


def _resident(path) -> int:
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES",
                          str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


@pytest.fixture
def read_file(tmp_path):
    if shutil.which("fincore") is None:
        pytest.skip("fincore (util-linux) is missing")
    path = tmp_path / "blob"
    path.write_bytes(os.urandom(SIZE))
    os.sync()  # DONTNEED drops clean pages only
    path.read_bytes()
    if _resident(path) < SIZE // 2:
        pytest.skip(f"{tmp_path} keeps no page cache to measure (tmpfs?)")
    return path


def test_release_drops_what_was_read_and_keeps_what_is_mapped(read_file):
    """Read-once pages go; pages a process maps (the code in use) stay resident."""
    with open(read_file, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapped:
        touched = sum(mapped[i] for i in range(0, SIZE, mmap.PAGESIZE))  # fault every page
        assert touched >= 0
        assert pagecache.release([str(read_file)]) == 1
        assert _resident(read_file) >= SIZE * 9 // 10
    assert pagecache.release([str(read_file), "/nonexistent/x.pyc"]) == 1
    assert _resident(read_file) < SIZE // 10


def test_started_files_name_modules_bytecode_and_mapped_libraries():
    files = pagecache.started_files()
    assert pagecache.__cached__ in files and pagecache.__file__ in files
    assert any(".so" in f for f in files)  # the interpreter's C extensions or libc


def test_mapped_files_parses_proc_maps():
    maps = (
        "55d0-55d1 r--p 00000000 fd:00 123 /usr/bin/python3.11\n"
        "7f00-7f01 rw-p 00000000 00:00 0 \n"
        "7f01-7f02 r-xp 00001000 fd:00 456 /opt/coral/lib/a b.so\n"
        "7f02-7f03 r--p 00000000 fd:00 789 /tmp/gone (deleted)\n"
        "7ffd-7ffe rw-p 00000000 00:00 0 [stack]\n")
    assert pagecache.mapped_files(maps) == {"/usr/bin/python3.11", "/opt/coral/lib/a b.so"}


def test_config_child_reports_what_it_read(tmp_path, monkeypatch):
    """The validation child's reads (pydantic and the models) are released by the parent."""
    released: list[str] = []
    monkeypatch.setattr(pagecache, "release", lambda paths: released.extend(paths) or 0)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("agent: {id: a1}\ncolony: {address: 127.0.0.1:1, caFile: /x.pem}\n")
    try:
        view.load_agent_config(str(cfg))
    except view.ConfigError:
        pass  # an error answer carries the list too
    assert any("pydantic" in f for f in released)


def test_library_ranges_are_read_only_file_mappings():
    maps = ("55d0-55d2 r--p 00000000 fd:00 123 /usr/bin/python3.11\n"
            "55d2-55d3 rw-p 00002000 fd:00 123 /usr/bin/python3.11\n"
            "7f00-7f01 r--p 00000000 00:00 0 \n"
            "7f01-7f04 r-xp 00001000 fd:00 456 /opt/coral/lib/cygrpc.so\n")
    assert pagecache.library_ranges(maps) == [(0x55d0, 2), (0x7f01, 3)]


def test_page_out_libraries_keeps_the_process_running():
    """Paged-out code faults back in when it runs: the process carries on unharmed."""
    code = ("from coral_lib import pagecache; import json, grpc; "
            "n = pagecache.page_out_libraries(); assert n > 0, n; "
            "print(json.dumps({'ok': grpc.StatusCode.OK.name}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == '{"ok": "OK"}'



def test_release_surplus_drops_what_faults_read_ahead_and_keeps_what_is_mapped(
        tmp_path, monkeypatch):
    """After code faults back in (recent kernels read ahead around a fault in executable
    code even under MADV_RANDOM), what was read but not mapped goes; mapped pages stay; no
    major fault since the last call: it does nothing. (Bounds are loose: the page cache
    holds large folios, which stay whole while any page of them is mapped.)"""
    if shutil.which("fincore") is None:
        pytest.skip("fincore (util-linux) is missing")
    size, used = 16 << 20, 1 << 20
    path = tmp_path / "lib.so"
    path.write_bytes(os.urandom(size))
    os.sync()
    path.read_bytes()
    if _resident(path) < size // 2:
        pytest.skip(f"{tmp_path} keeps no page cache to measure (tmpfs?)")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapped:
        assert sum(mapped[i] for i in range(0, used, mmap.PAGESIZE)) >= 0  # the code in use
        monkeypatch.setattr(pagecache, "_faults_released", -1)  # as if a fault came first
        assert pagecache.release_surplus() > 0
        assert used * 9 // 10 <= _resident(path) <= size // 4
        assert pagecache.release_surplus() == 0  # no fault read anything in since
        assert mapped[size - 1] >= 0  # its page was dropped: this fault reads the file
        assert pagecache.release_surplus() > 0  # so it acts again
        assert _resident(path) <= size // 4
