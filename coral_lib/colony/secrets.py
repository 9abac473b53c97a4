"""Keep secrets out of audit records and logs.

`scrub(value)` returns a copy of a JSON-like value (dicts, lists, strings, numbers) where:

* a value stored under a key that looks like a secret (secret, token, password,
  authorization, cookie, credential, private/api key, key material) becomes "[redacted]";
* every registered secret (`register(value)`, e.g. the colony secret or an operator token)
  is replaced by "[redacted]" inside any string, so a command line that carries the colony
  secret never lands in a record;
* secret values inside strings lose their value by the one redaction table in
  coral_lib/redact.py (flags, attached values, URL userinfo, headers, assignments, PEM);
* a list of strings (an argv) is redacted across flag/value pairs too (`--password`, `V`).

Registered secrets live in one process-wide set guarded by a lock: the colony registers
its secret once at start and every thread scrubs against it.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping

from coral_lib import redact

REDACTED = redact.REDACTED

# Key names (lower-cased, any separator) whose values are secrets.
_SECRET_KEY = re.compile(
    r"secret|token|passw|passphrase|authorization|cookie|credential|"
    r"api[-_]?key|private[-_]?key|(^|[-_.])key$|(^|[-_.])(pem|pkcs|pfx)($|[-_.])|^pwd$",
    re.IGNORECASE,
)

_lock = threading.Lock()
_known: set[str] = set()


def register(value: str) -> None:
    """Remember `value` as a secret: from now on scrub() redacts it inside any string."""
    if not isinstance(value, str):
        raise TypeError(f"secrets.register: expected a str, got {type(value).__name__}")
    if value:
        with _lock:
            _known.add(value)


def forget(value: str) -> None:
    """Stop redacting `value` (e.g. after a token was revoked and its record is gone)."""
    with _lock:
        _known.discard(value)


@functools.lru_cache(maxsize=4096)  # key names repeat in every record (never secrets)
def is_secret_key(name: str) -> bool:
    """True when a mapping key names something that holds a secret."""
    return bool(_SECRET_KEY.search(name))


def scrub(value: object) -> object:
    """Return a copy of `value` with secret-looking keys and known secrets redacted."""
    with _lock:
        # Longest first, so a secret that contains another one is replaced whole.
        known = sorted(_known, key=len, reverse=True)
    return _scrub(value, known)


def scrub_text(text: str) -> str:
    """Redact known secrets and inline secret pairs in one string."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    return _scrub_text(text, known)


def _scrub(value: object, known: list[str]) -> object:
    if isinstance(value, str):
        return _scrub_text(value, known)
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if is_secret_key(str(k)) and v not in (None, "") else _scrub(v, known)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return redact.redact_argv(list(value), known)
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, known) for v in value]
    return value


def _scrub_text(text: str, known: list[str]) -> str:
    return redact.redact_text(text, known)
