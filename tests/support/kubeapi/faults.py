"""Fault injection: errors and delays on matching requests, forced 410s, dropped watches.

    server.faults.fail(3, code=500, method="GET", path=r"/pods")  # next 3 matching -> 500
    server.faults.delay(0.2, path=r"/pods")                       # slow until cleared
    server.faults.force_gone(2)                                   # next 2 watches -> 410
    server.faults.drop_watches()                                  # cut every open watch
"""

from __future__ import annotations

import dataclasses
import re
import threading


@dataclasses.dataclass
class _Rule:
    method: str | None
    pattern: re.Pattern | None
    remaining: int | None  # None = until cleared
    code: int = 0
    seconds: float = 0.0
    watch: bool | None = None

    def matches(self, method: str, target: str, is_watch: bool) -> bool:
        return ((self.method is None or self.method == method)
                and (self.pattern is None or self.pattern.search(target) is not None)
                and (self.watch is None or self.watch == is_watch))


class Faults:
    def __init__(self, store):
        self._store = store
        self._lock = threading.Lock()
        self._errors: list[_Rule] = []
        self._delays: list[_Rule] = []
        self._gone = 0
        self.injected = 0  # how many faults fired, for tests to assert on

    def fail(self, count: int = 1, *, code: int = 500, method: str | None = None,
             path: str | None = None, watch: bool | None = None) -> None:
        """Answer the next `count` requests matching method / path regex with `code`."""
        with self._lock:
            self._errors.append(_Rule(method, re.compile(path) if path else None, count,
                                      code=code, watch=watch))

    def delay(self, seconds: float, *, method: str | None = None, path: str | None = None,
              count: int | None = None) -> None:
        with self._lock:
            self._delays.append(_Rule(method, re.compile(path) if path else None, count,
                                      seconds=seconds))

    def force_gone(self, count: int = 1) -> None:
        """The next `count` watches get an ERROR event with a 410 Status, whatever their RV."""
        with self._lock:
            self._gone += count

    def drop_watches(self) -> int:
        """Cut every open watch connection (no final chunk), as a crashing server would."""
        return self._store.drop_watches()

    def clear(self) -> None:
        with self._lock:
            self._errors.clear()
            self._delays.clear()
            self._gone = 0

    # ---- used by the handler ------------------------------------------------------------
    def take_gone(self) -> bool:
        with self._lock:
            if self._gone <= 0:
                return False
            self._gone -= 1
            self.injected += 1
            return True

    def check(self, method: str, target: str, is_watch: bool) -> tuple[int, float]:
        """(error code or 0, delay seconds) for this request; consumes counted rules."""
        if not self._errors and not self._delays:
            return 0, 0.0
        with self._lock:
            delay = sum(r.seconds for r in self._take(self._delays, method, target, is_watch,
                                                      first_only=False))
            hit = self._take(self._errors, method, target, is_watch, first_only=True)
            if hit:
                self.injected += 1
            return (hit[0].code if hit else 0), delay

    @staticmethod
    def _take(rules: list[_Rule], method, target, is_watch, *, first_only) -> list[_Rule]:
        out = []
        for rule in list(rules):
            if rule.matches(method, target, is_watch):
                out.append(rule)
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        rules.remove(rule)
                if first_only:
                    break
        return out
