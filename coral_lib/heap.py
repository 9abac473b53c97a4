"""Give the C heap's free memory back once a burst of operations is over (issue 15, a
leaner agent).

Parallel execs allocate in glibc's malloc arenas (each thread its own arena, up to
MALLOC_ARENA_MAX) and free it all when they finish, but glibc keeps freed memory in its
arenas unless it sits at the very top of one. malloc_trim(0) hands every free page back
to the kernel (MADV_DONTNEED inside the arenas too); the next burst faults it in again.
"""

from __future__ import annotations

import functools


@functools.cache
def _malloc_trim():
    import ctypes  # only here: loaded once an operation has run

    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc only (musl has none)
    except AttributeError:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def trim() -> bool:
    """Return the C heap's free pages to the kernel; False where libc cannot."""
    malloc_trim = _malloc_trim()
    if malloc_trim is None:
        return False
    malloc_trim(0)
    return True
