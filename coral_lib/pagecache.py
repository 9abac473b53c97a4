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
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable

MADV_RANDOM, MADV_PAGEOUT = 1, 21  # <asm-generic/mman-common.h>


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
