"""Names that cross a trust boundary: checked on the way in, escaped on the way out.

`check_name(kind, value)` accepts or refuses one untrusted name (agent id, service,
namespace, pod, node, container, label key or value, approval id) with an error naming
the field and what is accepted. `printable(text)` escapes control characters (newline,
carriage return, ANSI escapes, NUL, Unicode format characters such as bidi overrides)
so an untrusted string cannot forge a log line or repaint a terminal. `clip(text)`
bounds an untrusted string before it is logged or audited.
"""

from __future__ import annotations

import re
import unicodedata

# Kubernetes-like names: DNS labels and subdomains, plus ':' '@' '/' for host ids.
_STRICT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._:@/-]*[A-Za-z0-9_])?")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_LABEL_KEY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._/-]*[A-Za-z0-9])?")
_APPROVAL_ID = re.compile(r"[A-Za-z0-9-]+")

_STRICT_TEXT = "letters, digits and . _ - : @ / (starting and ending with a letter or digit)"
_PRINTABLE_TEXT = "printable text without control characters (no newline, ESC, NUL)"

# kind -> (maximum length, pattern or None for printable text, what is accepted)
KINDS: dict[str, tuple[int, re.Pattern | None, str]] = {
    "agent id": (253, _STRICT, _STRICT_TEXT),
    "node": (253, _STRICT, _STRICT_TEXT),
    "pod": (253, _STRICT, _STRICT_TEXT),
    "container": (253, _STRICT, _STRICT_TEXT),
    "namespace": (63, _DNS_LABEL, "lower-case letters, digits and '-' (a DNS label)"),
    # Service names come from process names and config too, so any printable text.
    "service": (253, None, _PRINTABLE_TEXT),
    "label key": (317, _LABEL_KEY, "letters, digits and . _ - / (a Kubernetes label key)"),
    "label value": (1024, None, _PRINTABLE_TEXT),
    "approval id": (64, _APPROVAL_ID, "letters, digits and '-'"),
}


class InvalidName(ValueError):
    """An untrusted name was refused; the message names the field and what is accepted."""


def check_name(kind: str, value: str, *, field: str = "", required: bool = True) -> str:
    """Return `value` when it is an acceptable `kind` name, else raise InvalidName.
    `field` names where it came from (e.g. 'services[3].namespace'); empty values are
    refused only when `required`."""
    limit, pattern, accepted = KINDS[kind]
    where = field or kind
    if not isinstance(value, str):
        raise InvalidName(f"{where}: expected text, got {type(value).__name__}")
    if not value:
        if required:
            raise InvalidName(f"{where} is empty: give a {kind}")
        return value
    if len(value) > limit:
        raise InvalidName(f"{where} is {len(value)} characters long; {_article(kind)} {kind} may "
                          f"have at most {limit}")
    ok = (pattern.fullmatch(value) is not None if pattern is not None
          # ASCII printable text has none of the unsafe categories: no per-character lookup
          else (value.isascii() and value.isprintable()) or not any(_unsafe(c) for c in value))
    if not ok:
        raise InvalidName(f"{where} '{clip(printable(value), 80)}': expected {accepted}")
    return value


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs")


def printable(text: object) -> str:
    """`text` with every control or format character escaped (\\n, \\x1b, \\x00, \\u202e):
    safe to put in one log line or one table cell."""
    text = str(text)
    if not any(_unsafe(c) for c in text):
        return text
    return "".join(_escape(c) if _unsafe(c) else c for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named:
        return named
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"


def clip(text: object, limit: int = 256) -> str:
    """At most about `limit` characters of `text`, with a marker saying how much was cut."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more characters cut]"
