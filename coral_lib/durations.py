"""Durations as people write them in config files: `30s`, `5m`, `1h`, `500ms`, `1m30s`, `45`.

A plain number (int, float or a numeric string) means seconds.
"""

from __future__ import annotations

import math
import re

ACCEPTED = (
    "a number of seconds (e.g. 30 or 2.5) or numbers with units ms, s, m, h "
    "(e.g. 500ms, 30s, 5m, 1h, 1m30s)"
)

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)")
_WHOLE = re.compile(r"(?:(?:\d+(?:\.\d+)?|\.\d+)(?:ms|s|m|h))+")


def parse_duration(text: object) -> float:
    """Return the duration in seconds; raise ValueError saying what is accepted."""
    if isinstance(text, bool):  # bool is an int subclass; `true` is never a duration
        raise ValueError(f"invalid duration {text!r}: expected {ACCEPTED}")
    if isinstance(text, int | float):
        return _checked(float(text), text)
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}: expected {ACCEPTED}")
    value = text.strip().lower()
    try:
        return _checked(float(value), text)
    except ValueError:
        pass
    if not value or not _WHOLE.fullmatch(value):
        raise ValueError(f"invalid duration {text!r}: expected {ACCEPTED}")
    total = sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _PART.findall(value))
    return _checked(total, text)


def format_duration(seconds: float) -> str:
    """Short human form used in messages, e.g. 30s, 5m, 0.5s."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def _checked(seconds: float, original: object) -> float:
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {original!r}: expected {ACCEPTED}, not negative")
    return seconds
