"""Issue 15, "A leaner agent" / "gRPC and allocator settings": after the last exec of a
burst the agent hands the C heap's free pages back (coral_lib.heap.trim, called from
agent/session.py); what it buys after a burst is measured with bench `agent_levers`'s
burst and reported in the issue note. Here: on a real process, freed memory glibc keeps
goes back to the kernel."""

from __future__ import annotations

import json
import subprocess
import sys

from coral_lib import heap

PROBE = """
import ctypes, json
from coral_lib import heap
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def rss_kb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1])
blocks = [libc.malloc(64 << 10) for _ in range(512)]  # 32 MB, below the mmap threshold
for b in blocks:
    ctypes.memset(b, 1, 64 << 10)
for b in blocks[::2]:  # 16 MB of holes between live chunks: free() alone keeps them
    libc.free(b)
kept = rss_kb()
ok = heap.trim()
print(json.dumps({"kept_kb": kept, "trimmed_kb": rss_kb(), "ok": ok}))
"""


def test_trim_gives_freed_heap_pages_back_to_the_kernel():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, timeout=60)
    seen = json.loads(out.stdout)
    assert seen["ok"]
    assert seen["kept_kb"] - seen["trimmed_kb"] > 12 << 10, seen  # most of the 16 MB


def test_trim_is_harmless_to_call_repeatedly():
    assert heap.trim() and heap.trim()
