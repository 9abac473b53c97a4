"""What a memory cgroup is charged for, page by page (root; a diagnostic for issue 15).

    python tools/cgroup_pages.py CGROUP_DIR [TREE ...]

Prints the pages charged to the cgroup (v1 or v2 directory) by kind, from
/proc/kpagecgroup and /proc/kpageflags: anonymous, file mapped or not, file pages holding
buffer heads (filesystem metadata: inode tables, directories, journal) and the rest
(page tables, kernel pages). With TREEs, it walks their regular files and names those
whose cached pages are charged to the cgroup: for each file, mincore() finds its cached
pages, which are touched through a MADV_RANDOM mapping (a cached page is mapped, nothing
is read) so /proc/self/pagemap gives their page frames. Each frame is counted once, so a
file seen both through an overlay mount and its layer directory is not counted twice.

This is how the DaemonSet agent's page cache was found to be its own libraries' read-ahead
and filesystem metadata, not runc's, the pods' or hostPath files.
"""

from __future__ import annotations

import collections
import ctypes
import mmap
import os
import struct
import sys

PAGE = mmap.PAGESIZE
MB = 1 << 20
ANON, LRU, ACTIVE, MMAP, PRIVATE = 1 << 12, 1 << 5, 1 << 6, 1 << 11, 1 << 35  # kpageflags
CHUNK = 1 << 16


def kind(flags: int) -> str:
    """Pure: what a charged page is, from its /proc/kpageflags bits."""
    if flags & ANON:
        return "anon"
    if not flags & LRU:
        return "not on an LRU (page tables, kernel)"
    if flags & PRIVATE:
        return "file, buffer heads (filesystem metadata)"
    return "file, " + ("mapped" if flags & MMAP else "unmapped") + \
        (", active" if flags & ACTIVE else ", inactive")


def by_kind(cgroup_ino: int) -> collections.Counter:
    """Pages charged to the cgroup whose inode is `cgroup_ino`, by kind()."""
    out: collections.Counter = collections.Counter()
    wanted = struct.pack("Q", cgroup_ino)
    with open("/proc/kpagecgroup", "rb") as owners, open("/proc/kpageflags", "rb") as flags:
        while True:
            a, b = owners.read(8 * CHUNK), flags.read(8 * CHUNK)
            count = min(len(a), len(b)) // 8
            if not count:
                return out
            at = a.find(wanted, 0, count * 8)  # charged pages are few: find them in C
            while at >= 0:
                if at % 8 == 0:
                    out[kind(struct.unpack_from("Q", b, at)[0])] += 1
                    at = a.find(wanted, at + 8, count * 8)
                else:
                    at = a.find(wanted, at + 1, count * 8)


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def charged_frames(path: str, cgroup_ino: int, *, libc: ctypes.CDLL, pagemap: int,
                   owners: int) -> set[int]:
    """The page frames of `path`'s cached pages charged to the cgroup."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return set()
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return set()
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            return set()
        try:
            pages = (size + PAGE - 1) // PAGE
            vec = ctypes.create_string_buffer(pages)
            if libc.mincore(addr, size, vec) != 0:
                return set()
            libc.madvise(addr, size, mmap.MADV_RANDOM)  # map what is cached, read nothing
            found = set()
            for i in (i for i in range(pages) if vec.raw[i] & 1):
                ctypes.c_char.from_address(addr + i * PAGE).value  # noqa: B018 - the touch
                entry, = struct.unpack("Q", os.pread(pagemap, 8, (addr // PAGE + i) * 8))
                frame = entry & ((1 << 55) - 1)
                if entry >> 63 and struct.unpack(
                        "Q", os.pread(owners, 8, frame * 8))[0] == cgroup_ino:
                    found.add(frame)
            return found
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def by_file(cgroup_ino: int, trees: list[str]) -> dict[str, int]:
    """Pages charged to the cgroup per regular file under `trees` (each frame once)."""
    libc, seen, out = _libc(), set(), {}
    pagemap = os.open("/proc/self/pagemap", os.O_RDONLY)
    owners = os.open("/proc/kpagecgroup", os.O_RDONLY)
    try:
        for tree in trees:
            for root, _dirs, names in os.walk(tree):
                for name in names:
                    path = os.path.join(root, name)
                    if not os.path.isfile(path) or os.path.islink(path):
                        continue
                    frames = charged_frames(path, cgroup_ino, libc=libc, pagemap=pagemap,
                                            owners=owners) - seen
                    seen |= frames
                    if frames:
                        out[path] = len(frames)
    finally:
        os.close(pagemap)
        os.close(owners)
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 1:
        print(__doc__, file=sys.stderr)
        return 2
    ino = os.stat(argv[0]).st_ino
    kinds = by_kind(ino)
    for name, pages in kinds.most_common():
        print(f"{pages * PAGE / MB:8.2f} MB  {name}")
    print(f"{sum(kinds.values()) * PAGE / MB:8.2f} MB  charged pages in all")
    if argv[1:]:
        files = by_file(ino, argv[1:])
        print(f"files under {' '.join(argv[1:])}: {sum(files.values()) * PAGE / MB:.2f} MB")
        for path, pages in sorted(files.items(), key=lambda kv: -kv[1])[:40]:
            print(f"{pages * PAGE / MB:8.2f} MB  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
