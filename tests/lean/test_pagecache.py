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


def _pages(rss: int, anon: int = 0, swap: int = 0, dirty: int = 0) -> dict[str, int]:
    return {"Rss": rss, "Anonymous": anon, "Swap": swap, "Private_Dirty": dirty,
            "Shared_Dirty": 0}


# smaps of mappings drop_clean_mappings must refuse or accept (fields it reads, plus Rss).
SMAPS_CASES = {
    "lib text, clean": ("7f01000-7f04000 r-xp 00001000 fd:00 456 /opt/coral/lib/cygrpc.so",
                        _pages(12), True),
    "constants, clean": ("7f04000-7f05000 r--p 00004000 fd:00 456 /opt/coral/lib/cygrpc.so",
                         _pages(4), True),
    "relocated RELRO": ("7f05000-7f06000 r--p 00005000 fd:00 456 /opt/coral/lib/cygrpc.so",
                        _pages(4, anon=4, dirty=4), False),
    "RELRO swapped out": ("7f06000-7f07000 r--p 00006000 fd:00 456 /opt/coral/lib/a.so",
                          _pages(0, swap=4), False),
    "writable data": ("7f07000-7f08000 rw-p 00007000 fd:00 456 /opt/coral/lib/cygrpc.so",
                      _pages(4), False),
    "shared file": ("7f08000-7f09000 r--s 00000000 fd:00 457 /dev/shm/segment",
                    _pages(4), False),
    "guard": ("7f09000-7f0a000 ---p 00009000 fd:00 456 /opt/coral/lib/cygrpc.so",
              _pages(0), False),
    "deleted file": ("7f0a000-7f0b000 r-xp 00000000 fd:00 458 /opt/old/lib.so (deleted)",
                     _pages(4), False),
    "anonymous read-only": ("7f0b000-7f0c000 r--p 00000000 00:00 0 ",
                            _pages(4, anon=4, dirty=4), False),
    "anonymous, no page yet": ("7f0c000-7f0d000 r--p 00000000 00:00 0",
                               _pages(0), False),
    "heap": ("55d3000-55d9000 rw-p 00000000 00:00 0 [heap]",
             _pages(24, anon=24, dirty=24), False),
    "stack": ("7ffd000-7ffe000 rw-p 00000000 00:00 0 [stack]",
              _pages(4, anon=4, dirty=4), False),
    "vvar": ("7ffe000-7fff000 r--p 00000000 00:00 0 [vvar]",
             _pages(0), False),
    "vdso": ("7fff000-7fff800 r-xp 00000000 00:00 0 [vdso]",
             _pages(4), False),
    "fields missing": ("8000000-8001000 r-xp 00000000 fd:00 459 /opt/coral/lib/b.so",
                       {"Rss": 4}, False),
}


def _smaps_text(cases) -> str:
    lines = []
    for header, fields, _ in cases:
        lines.append(header)
        lines += [f"{key}:{value:>16} kB" for key, value in fields.items()]
        lines.append("VmFlags: rd mr mw me")
    return "\n".join(lines) + "\n"


def test_clean_mappings_takes_only_pages_the_file_gives_back():
    """Issue 15 host agent <= 45 MB: MADV_DONTNEED only where the pages are the file's own;
    a copy-on-write page (RELRO), a writable or shared mapping and the kernel's special
    mappings are refused."""
    text = _smaps_text(SMAPS_CASES.values())
    accepted = pagecache.clean_mappings(text.splitlines(keepends=True))
    expected = [(int(h.split("-")[0], 16),
                 int(h.split()[0].split("-")[1], 16) - int(h.split("-")[0], 16))
                for h, _, ok in SMAPS_CASES.values() if ok]
    assert accepted == expected == [(0x7f01000, 0x3000), (0x7f04000, 0x1000)]


@pytest.mark.parametrize("name", [n for n, (_, _, ok) in SMAPS_CASES.items() if not ok])
def test_clean_mappings_refuses(name):
    assert pagecache.clean_mappings(_smaps_text([SMAPS_CASES[name]]).splitlines()) == []


def test_within_cuts_ranges_to_the_loaded_segments():
    segments = [(0x7f04000, 0x7f05000), (0x7f00000, 0x7f03000)]
    ranges = [(0x7f01000, 0x3000), (0x7f04000, 0x2000), (0x8000000, 0x1000)]
    assert pagecache.within(ranges, segments) == [(0x7f01000, 0x2000), (0x7f04000, 0x1000)]


def test_loaded_read_only_segments_cover_the_code_not_the_data():
    """The loader's list: libc's code is in it, the writable data of Python's own binary
    is not (a relocated page lives there)."""
    import ctypes

    segments = pagecache.loaded_read_only_segments()
    libc_function = ctypes.cast(ctypes.CDLL(None).getpid, ctypes.c_void_p).value
    assert any(start <= libc_function < end for start, end in segments)
    writable = [line.split()[0] for line in open("/proc/self/maps") if " rw-p " in line
                and "/" in line]
    for text in writable:
        low, high = (int(x, 16) for x in text.split("-"))
        assert not any(start < high and low < end for start, end in segments), text


# What a real process's smaps says before and after drop_clean_mappings, as JSON.
DROP_PROBE = """
import json, mmap, ssl, sys, grpc
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes
from coral_lib import pagecache

def resident(path):
    rss = anon = 0
    entry = None
    for line in open("/proc/self/smaps"):
        head = line.split()
        if not head[0].endswith(":"):
            entry = head[5] if len(head) > 5 else ""
        elif entry == path and head[0] in ("Rss:", "Anonymous:"):
            rss += int(head[1]) * (head[0] == "Rss:")
            anon += int(head[1]) * (head[0] == "Anonymous:")
    return rss, anon

blob = sys.argv[1]
with open(blob, "rb") as f:
    mapped = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
digest = hash(mapped[:])
libs = sorted(p for p in pagecache.mapped_files(open("/proc/self/maps").read())
              if "cygrpc" in p or "_rust" in p or "libpython" in p)
before = {"blob": resident(blob), "libs": [resident(p) for p in libs]}
n = pagecache.drop_clean_mappings()
after = {"blob": resident(blob), "libs": [resident(p) for p in libs]}
# the code and data dropped fault back unchanged: crypto, TLS setup, gRPC enums
key = ec.generate_private_key(ec.SECP256R1())
key.public_key().verify(key.sign(b"x", ec.ECDSA(hashes.SHA256())), b"x",
                        ec.ECDSA(hashes.SHA256()))
ssl.create_default_context()
print(json.dumps({"advised": n, "libs": libs, "before": before, "after": after,
                  "same": hash(mapped[:]) == digest, "grpc": grpc.StatusCode.OK.name}))
"""


def test_drop_clean_mappings_unmaps_clean_library_pages_and_the_process_carries_on(tmp_path):
    """A real process: its libraries' clean pages leave its resident set, their
    copy-on-write pages (relocations) stay, a file it mapped itself (not a library) is left
    alone, and what it runs next faults back unchanged."""
    import json

    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(SIZE))
    out = subprocess.run([sys.executable, "-c", DROP_PROBE, str(blob)], capture_output=True,
                         text=True, check=True, timeout=60)
    seen = json.loads(out.stdout)
    assert seen["advised"] > 0 and seen["same"] and seen["grpc"] == "OK"
    assert len(seen["libs"]) == 3, seen["libs"]
    assert seen["after"]["blob"] == seen["before"]["blob"]
    for (_, anon_before), (_, anon_after) in zip(seen["before"]["libs"],
                                                 seen["after"]["libs"], strict=True):
        assert anon_after == anon_before  # relocated pages are never dropped
    rss_before = sum(r - a for r, a in seen["before"]["libs"])
    rss_after = sum(r - a for r, a in seen["after"]["libs"])
    assert rss_after < rss_before // 2, (rss_before, rss_after)



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
