"""Why a write to one of the colony's SQLite files failed, in words an operator can act on."""

from __future__ import annotations

import os
import sqlite3


def read_only(directory: str) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def explain(what: str, path: str, exc: sqlite3.Error) -> str:
    """'<what> (<path>): <cause>: <sqlite message>' naming a full disk or read-only dir."""
    directory = os.path.dirname(os.path.abspath(path))
    text = str(exc)
    if "full" in text:
        cause = f"the disk holding {directory} is full"
    elif read_only(directory) or "readonly" in text or "read-only" in text:
        cause = f"the data directory {directory} is read-only"
    elif not os.path.isdir(directory):
        cause = f"the data directory {directory} does not exist"
    else:
        cause = "SQLite error"
    return f"{what} ({path}): {cause}: {text}"
