"""Token buckets per identity and per target for remote operations.

Charged per operation for the identity and per target for each target (check_fanout): one
operation takes ONE token from the caller's bucket however many targets it fans out to,
and one token from each target's bucket; a target whose bucket is empty is refused alone,
and an operation that runs nowhere costs the caller nothing. So `perIdentity` bounds how
many operations an identity starts and `perTarget` how often any one target is hit; a
200-pod exec is one operation. `check` is the single-target case (one token of each).
A bucket holds `burst` tokens and refills at `per_second`. Memory stays bounded: buckets
that have refilled completely carry no state and are dropped, and beyond `max_buckets`
the least recently used are dropped.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import threading
import time
from collections.abc import Callable

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*(?:,\s*burst\s*=\s*(\d+)\s*)?")


@dataclasses.dataclass(frozen=True)
class Rate:
    """`per_second` tokens are added each second, up to `burst`."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)):
            raise ValueError(f"rate must be a positive number per second, got {self.per_second}")
        if not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"burst must be a whole number >= 1, got {self.burst!r}")


def parse_rate(text: str) -> Rate:
    """`10/s`, `30/m`, `100/h`, optionally `, burst=N` (default burst: the count per unit)."""
    match = _RATE.fullmatch(text or "")
    if not match:
        raise ValueError(f"invalid rate {text!r}: expected N/s, N/m or N/h, optionally "
                         "followed by ', burst=B' (e.g. '30/m, burst=10')")
    count, unit, burst = float(match[1]), match[2], match[3]
    default_burst = max(1, int(count))
    try:
        return Rate(per_second=count / _UNITS[unit], burst=int(burst) if burst else default_burst)
    except ValueError as exc:
        raise ValueError(f"invalid rate {text!r}: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0
    scope: str = ""  # "identity" or "target" when refused
    key: str = ""

    @property
    def reason(self) -> str:
        if self.allowed:
            return ""
        return (f"rate limit for {self.scope} {self.key!r} exceeded; "
                f"retry in {self.retry_after:.1f}s")


@dataclasses.dataclass
class _Bucket:
    tokens: float
    updated: float


class _Buckets:
    """One scope's buckets, least recently used first."""

    def __init__(self, rate: Rate, max_buckets: int) -> None:
        self.rate, self.max_buckets = rate, max_buckets
        self.items: collections.OrderedDict[str, _Bucket] = collections.OrderedDict()

    def level(self, key: str, now: float) -> float:
        bucket = self.items.get(key)
        if bucket is None:
            return float(self.rate.burst)
        elapsed = max(0.0, now - bucket.updated)
        return min(float(self.rate.burst), bucket.tokens + elapsed * self.rate.per_second)

    def wait_for_token(self, key: str, now: float) -> float:
        missing = 1.0 - self.level(key, now)
        # A tiny tolerance so float refill arithmetic cannot refuse a token that is due.
        return 0.0 if missing <= 1e-9 else missing / self.rate.per_second

    def take(self, key: str, now: float) -> None:
        self.items[key] = _Bucket(max(0.0, self.level(key, now) - 1.0), now)
        self.items.move_to_end(key)
        self._evict(now)

    def _evict(self, now: float) -> None:
        while self.items:
            oldest = next(iter(self.items))
            full = self.level(oldest, now) >= self.rate.burst
            if not full and len(self.items) <= self.max_buckets:
                break
            del self.items[oldest]


class RateLimiter:
    """Thread-safe token buckets; either scope may be None (unlimited)."""

    def __init__(
        self, *, per_identity: Rate | None, per_target: Rate | None,
        clock: Callable[[], float] = time.monotonic, max_buckets: int = 10_000,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._scopes = {
            name: _Buckets(rate, max_buckets)
            for name, rate in (("identity", per_identity), ("target", per_target)) if rate
        }

    def check(self, identity: str, target: str) -> Verdict:
        """Take a token for `identity` and for `target`, or say how long to wait."""
        keys = {"identity": identity, "target": target}
        with self._lock:
            now = self._clock()
            waits = {name: buckets.wait_for_token(keys[name], now)
                     for name, buckets in self._scopes.items()}
            refused = {name: wait for name, wait in waits.items() if wait > 0}
            if refused:
                scope = max(refused, key=refused.__getitem__)
                return Verdict(False, retry_after=refused[scope], scope=scope, key=keys[scope])
            for name, buckets in self._scopes.items():
                buckets.take(keys[name], now)
            return Verdict(True)

    def check_fanout(self, identity: str, targets: list[str]) -> tuple[Verdict, list[Verdict]]:
        """One operation on `targets`: (the identity's verdict, one verdict per target).
        When the identity is over its limit nothing is taken and the list is empty."""
        with self._lock:
            now = self._clock()
            mine = self._scopes.get("identity")
            wait = mine.wait_for_token(identity, now) if mine else 0.0
            if wait > 0:
                return Verdict(False, retry_after=wait, scope="identity", key=identity), []
            verdicts = [self._take_target(target, now) for target in targets]
            if mine and any(v.allowed for v in verdicts):
                mine.take(identity, now)
            return Verdict(True), verdicts

    def _take_target(self, target: str, now: float) -> Verdict:
        buckets = self._scopes.get("target")
        if buckets is None:
            return Verdict(True)
        wait = buckets.wait_for_token(target, now)
        if wait > 0:
            return Verdict(False, retry_after=wait, scope="target", key=target)
        buckets.take(target, now)
        return Verdict(True)

    def tracked(self) -> int:
        """How many buckets are held in memory (for tests and metrics)."""
        with self._lock:
            return sum(len(b.items) for b in self._scopes.values())
