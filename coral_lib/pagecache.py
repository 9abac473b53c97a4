"""Give back the page cache a process filled while starting (issue 15, a leaner agent).

A container is charged for the page cache it reads (cgroup memory.current). An agent
reads its modules' bytecode once at start and the kernel reads ahead around every page
it touches in a shared library: after start-up those pages are never used again, yet
they stay charged to the agent's pod until memory runs short. POSIX_FADV_DONTNEED drops
a file's cached pages that no process maps (mapped pages, the code in use, stay), so
dropping them costs nothing but a re-read if some other process needs them later.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable


def mapped_files(maps: str) -> set[str]:
    """Files mapped in a /proc/PID/maps text (not anonymous, deleted or special mappings)."""
    out = set()
    for line in maps.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and fields[5].startswith("/") and not fields[5].endswith(
                " (deleted)"):
            out.add(fields[5])
    return out


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
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
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


@functools.cache
def release_started() -> int:
    """release(started_files()), once per process: call it when start-up is over."""
    return release(started_files())
