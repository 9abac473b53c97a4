"""Give back the page cache a process filled while starting (issue 15, a leaner agent).

A container is charged for the page cache it reads (cgroup memory.current). An agent
reads its modules' bytecode once at start and the kernel reads ahead around every page
it touches in a shared library: after start-up those pages are never used again, yet
they stay charged to the agent's pod until memory runs short. POSIX_FADV_DONTNEED drops
a file's cached pages that no process maps (mapped pages, the code in use, stay), so
dropping them costs nothing but a re-read if some other process needs them later.

Pages a process maps are charged too: relocating a large library (gRPC's core, 17 MB)
touches it all over and the kernel reads around each touch, so after start-up most of
what is mapped is never run again. `page_out_libraries` marks those read-only mappings
random-access (no read-around on later faults) and pages them out (MADV_PAGEOUT, Linux
5.4+; pages other processes map are left alone): what the agent then runs faults back in
page by page, and only that stays charged.

MADV_PAGEOUT leaves alone a page another process maps too (a host agent shares its venv's
libraries with the colony and any other Coral process), so those pages stay in the agent's
resident set though it never runs them again. `drop_clean_mappings` unmaps them from this
process only (MADV_DONTNEED on mappings that hold nothing but the file's own pages): the
page cache and the other processes keep them, and what the agent runs again faults back.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable, Iterator

MADV_RANDOM, MADV_DONTNEED, MADV_PAGEOUT = 1, 4, 21  # <asm-generic/mman-common.h>
PT_LOAD, PF_W = 1, 2  # <elf.h>


def mapped_files(maps: str) -> set[str]:
    """Files mapped in a /proc/PID/maps text (not anonymous, deleted or special mappings)."""
    out = set()
    for line in maps.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and fields[5].startswith("/") and not fields[5].endswith(
                " (deleted)"):
            out.add(fields[5])
    return out


def library_ranges(maps: str) -> list[tuple[int, int]]:
    """(start, length) of the read-only, file-backed mappings in a /proc/PID/maps text:
    code and constants, which the kernel re-reads from the file when they are touched."""
    out = []
    for line in maps.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and fields[5].startswith("/") and "w" not in fields[1]:
            start, _, end = fields[0].partition("-")
            out.append((int(start, 16), int(end, 16) - int(start, 16)))
    return out


def page_out_libraries() -> int:
    """Page out this process's read-only file mappings (see the module's doc); returns how
    many were paged out. Does nothing where the kernel refuses (older than 5.4)."""
    import ctypes  # only here: the agent calls this once

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            ranges = library_ranges(f.read())
    except OSError:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    done = 0
    for start, length in ranges:
        libc.madvise(start, length, MADV_RANDOM)
        if libc.madvise(start, length, MADV_PAGEOUT) == 0:
            done += 1
    return done


def clean_mappings(smaps: Iterable[str]) -> list[tuple[int, int]]:
    """(start, length) of the mappings in /proc/PID/smaps lines whose resident pages are
    all the file's own, so that MADV_DONTNEED only unmaps them (they fault back from the
    file unchanged): readable, not writable, private, file-backed (not deleted), with no
    copy-on-write page (Anonymous 0, nothing swapped; a relocated RELRO page is one, and
    dropping it would bring back the unrelocated file bytes). Everything else is refused:
    writable or shared mappings, [heap], [stack], [vdso], [vvar], anonymous memory."""
    return [(start, end - start) for start, end, perms, path, fields in _smaps_entries(smaps)
            if _clean_file_mapping(perms, path, fields)]


def _clean_file_mapping(perms: str, path: str, fields: dict[str, int]) -> bool:
    return (perms[:1] == "r" and "w" not in perms and perms.endswith("p")
            and path.startswith("/") and not path.endswith(" (deleted)")
            and all(fields.get(key) == 0 for key in _NO_PAGE_OF_ITS_OWN))


# smaps fields that count a page of the process's own (copy-on-write, dirty or swapped)
_NO_PAGE_OF_ITS_OWN = ("Anonymous", "Swap", "Private_Dirty", "Shared_Dirty")


def _smaps_entries(lines: Iterable[str]) -> Iterator[tuple[int, int, str, str, dict[str, int]]]:
    """(start, end, perms, path, {field: kB} of _NO_PAGE_OF_ITS_OWN) per mapping, streamed
    (a whole smaps text of a Python process is half a megabyte of small strings)."""
    entry = None
    for line in lines:
        head = line.split(None, 5)
        if head and head[0].endswith(":"):
            if entry is not None and head[0][:-1] in _NO_PAGE_OF_ITS_OWN and len(head) > 1:
                entry[4][head[0][:-1]] = int(head[1])
            continue
        if entry is not None:
            yield entry
        entry = None
        if len(head) >= 5 and "-" in head[0]:
            start, _, end = head[0].partition("-")
            path = head[5].rstrip("\n") if len(head) == 6 else ""
            entry = (int(start, 16), int(end, 16), head[1], path, {})
    if entry is not None:
        yield entry


def within(ranges: Iterable[tuple[int, int]],
           segments: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of `ranges` ((start, length)) inside `segments` ((start, end)), as
    (start, length), in order."""
    spans = sorted(segments)
    out = []
    for start, length in ranges:
        for seg_start, seg_end in spans:
            low, high = max(start, seg_start), min(start + length, seg_end)
            if low < high:
                out.append((low, high - low))
    return out


def loaded_read_only_segments() -> list[tuple[int, int]]:
    """(start, end), page-aligned, of the non-writable PT_LOAD segments of every ELF object
    the dynamic loader lists as loaded (dl_iterate_phdr). An object is listed only once its
    segments are mapped; a read-only segment is never relocated (relocations land in the
    writable segment holding RELRO), so these ranges cannot change under us while a library
    is being loaded by another thread, and Python never unloads one."""
    import ctypes  # only here: the agent calls this once

    class Phdr(ctypes.Structure):  # Elf64_Phdr
        _fields_ = [("p_type", ctypes.c_uint32), ("p_flags", ctypes.c_uint32),
                    ("p_offset", ctypes.c_uint64), ("p_vaddr", ctypes.c_uint64),
                    ("p_paddr", ctypes.c_uint64), ("p_filesz", ctypes.c_uint64),
                    ("p_memsz", ctypes.c_uint64), ("p_align", ctypes.c_uint64)]

    class Info(ctypes.Structure):  # struct dl_phdr_info, the fields read here
        _fields_ = [("addr", ctypes.c_uint64), ("name", ctypes.c_char_p),
                    ("phdr", ctypes.POINTER(Phdr)), ("phnum", ctypes.c_uint16)]

    if ctypes.sizeof(ctypes.c_void_p) != 8:
        return []
    page = os.sysconf("SC_PAGE_SIZE")
    out: list[tuple[int, int]] = []

    def each(info, _size, _data) -> int:
        for i in range(info.contents.phnum):
            ph = info.contents.phdr[i]
            if ph.p_type == PT_LOAD and not ph.p_flags & PF_W and ph.p_memsz:
                start = info.contents.addr + ph.p_vaddr
                out.append((start // page * page, -(-(start + ph.p_memsz) // page) * page))
        return 0

    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(Info), ctypes.c_size_t,
                                ctypes.c_void_p)(each)
    # PyDLL: called holding the GIL, so no thread of ours can be in the loader (a Python
    # import's dlopen holds the GIL) while the loader's lock is held here waiting for it
    ctypes.PyDLL(None).dl_iterate_phdr(callback, None)
    return out


def drop_clean_mappings() -> int:
    """Unmap the resident pages of this process's clean library mappings (see the module's
    doc): the smaps mappings clean_mappings accepts, cut to the loaded objects' read-only
    segments; returns how many ranges were advised. Semantically what the kernel's reclaim
    does to a clean file page at any time: the next touch reads it back from the file."""
    import ctypes  # only here: the agent calls this once

    try:
        with open("/proc/self/smaps", encoding="utf-8", errors="replace") as f:
            ranges = within(clean_mappings(f), loaded_read_only_segments())
    except OSError:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return sum(libc.madvise(start, length, MADV_DONTNEED) == 0 for start, length in ranges)


def module_files(modules: Iterable[object]) -> set[str]:
    """The source and bytecode files of imported modules (what importing them read)."""
    out = set()
    for module in modules:
        for attr in ("__file__", "__cached__"):
            path = getattr(module, attr, None)
            if isinstance(path, str) and path.startswith("/"):
                out.add(path)
    return out


def started_files() -> set[str]:
    """What this process read to start: its modules' files and every file it maps."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            maps = f.read()
    except OSError:
        maps = ""
    return module_files(list(sys.modules.values())) | mapped_files(maps)


def release(paths: Iterable[str]) -> int:
    """Drop the unmapped cached pages of `paths`; returns how many files were advised.
    A file that cannot be opened is skipped: this only ever gives memory back."""
    done = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # never wait on a FIFO
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            done += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return done


def release_all() -> int:
    """Page out the libraries and drop the start-up files' cache; returns how many files
    were advised."""
    page_out_libraries()
    drop_clean_mappings()
    return release(started_files())


@functools.cache
def release_started() -> int:
    """release_all() once per process: call it when start-up is over (registered)."""
    return release_all()


@functools.cache
def release_settled() -> int:
    """release_all() once more, after the first heartbeat: what the first discovery rounds
    loaded and read (the node agent's first pod list, its API client) is over too."""
    return release_all()


_faults_released = -1  # the major fault count release_surplus last acted on


def release_surplus() -> int:
    """Drop the read-ahead around code faulted in since the last call; returns how many
    files were advised (0 when nothing was read in by a fault since).

    Once `page_out_libraries` has run, what the agent runs faults back in. Recent kernels
    read ahead around a fault in executable code even in a MADV_RANDOM mapping (measured
    on 6.18: one fault read 3 MB of a PROT_EXEC mapping, 4 KB of a PROT_READ one; the
    window is the device's read_ahead_kb), while only the pages around the fault get
    mapped: the rest stays cached, charged to the agent's cgroup and unused (11 MB on the
    DaemonSet agent after its first operations). Only a fault that reads from the file
    creates it, so this acts only when the process's major fault count moved, and then
    costs one posix_fadvise per file it maps or imported (a few ms): mapped pages stay."""
    global _faults_released
    import resource  # only here: called after operations and heartbeats

    faults = resource.getrusage(resource.RUSAGE_SELF).ru_majflt
    if faults == _faults_released:
        return 0
    _faults_released = faults
    return release(started_files())
