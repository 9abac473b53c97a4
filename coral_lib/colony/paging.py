"""Pages of ListServices: page sizes and page tokens (pure).

A listing is ordered by (agent id, service key), the registry's primary key; a page token
is the position after which the next page starts, so a page is a range scan of an index
whatever the registry holds (keyset paging: no OFFSET, stable while services come and go).
The token carries no authority: the caller's rights are checked on every request.
"""

from __future__ import annotations

import base64
import json

MAX_PAGE_SIZE = 10_000
UNPAGED_LIMIT = 100_000  # page_size 0 (clients before paging): every match, up to this


class BadPage(ValueError):
    """A page_size or page_token the colony cannot use; the message names the field."""


def page_limit(page_size: int) -> int:
    """How many records one answer holds for a requested page_size (0: unpaged)."""
    if page_size < 0:
        raise BadPage(f"page_size {page_size}: expected 0 (every match) or a positive number")
    return UNPAGED_LIMIT if page_size == 0 else min(page_size, MAX_PAGE_SIZE)


def too_many(count: int) -> str:
    return (f"more than {UNPAGED_LIMIT:,} services match ({count:,}+): narrow the filters or "
            "ask for pages (page_size, page_token; coral services --limit)")


def encode(agent_id: str, key: str) -> str:
    """The token naming the last record of a page."""
    raw = json.dumps([agent_id, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> tuple[str, str] | None:
    """(agent id, key) after which the page starts; None for '' (the first page)."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        agent_id, key = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise BadPage(f"page_token {token[:40]!r} is not one this colony issued") from exc
    if not isinstance(agent_id, str) or not isinstance(key, str):
        raise BadPage(f"page_token {token[:40]!r} is not one this colony issued")
    return agent_id, key
