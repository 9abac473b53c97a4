"""Linux capabilities of a process, read from /proc/<pid>/status (no libcap needed)."""

from __future__ import annotations

import os
from collections.abc import Iterable

# Bit numbers from linux/capability.h: only the ones Coral's decisions look at.
BITS = {
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_ADMIN": 21,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
}


def parse_status(text: str, *, field: str = "CapEff") -> int:
    """The capability mask of one field ("CapEff", "CapPrm", "CapBnd") of a status file."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == field:
            return int(value.strip(), 16)
    return 0


def read_mask(*, proc_root: str = "/proc", pid: int | str = "self", field: str = "CapEff") -> int:
    """The capability mask of a live process; 0 when its status cannot be read."""
    try:
        with open(os.path.join(proc_root, str(pid), "status")) as fh:
            return parse_status(fh.read(), field=field)
    except OSError:
        return 0


def has(mask: int, name: str) -> bool:
    return bool(mask >> BITS[name] & 1)


def missing(mask: int, names: Iterable[str]) -> list[str]:
    """The names (in the order given) whose bit is not set in mask."""
    return [name for name in names if not has(mask, name)]


def names(mask: int) -> list[str]:
    """The known capability names set in mask, sorted."""
    return sorted(name for name in BITS if has(mask, name))
