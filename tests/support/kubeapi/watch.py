"""Watchers: per-connection queues of ready-to-send event lines, filtered by selectors.

A watcher sees an object move in or out of its selector as ADDED / DELETED, as the real
API server's watch cache does.
"""

from __future__ import annotations

import dataclasses
import json
import queue

from tests.support.kubeapi import selectors

CLOSED = object()  # queue sentinel: the connection is to be dropped


@dataclasses.dataclass(eq=False)
class Event:
    rv: int
    key: str  # ResourceType.key
    type: str  # ADDED / MODIFIED / DELETED
    namespace: str
    obj: dict
    raw: bytes
    old: dict | None = None
    _lines: dict = dataclasses.field(default_factory=dict)

    def line(self, etype: str) -> bytes:
        cached = self._lines.get(etype)
        if cached is None:
            cached = b'{"type":"' + etype.encode() + b'","object":' + self.raw + b"}\n"
            self._lines[etype] = cached
        return cached


def event_line(etype: str, raw: bytes) -> bytes:
    return b'{"type":"' + etype.encode() + b'","object":' + raw + b"}\n"


class Watcher:
    """One open watch. The store puts lines into `queue`; the connection thread sends them."""

    def __init__(self, *, key: str, namespace: str | None, pred: selectors.Predicate | None):
        self.key = key
        self.namespace = namespace
        self.pred = pred
        self.queue: queue.SimpleQueue = queue.SimpleQueue()

    def _matches(self, obj: dict | None) -> bool:
        return obj is not None and (self.pred is None or self.pred(obj))

    def offer(self, ev: Event) -> None:
        if self.namespace is not None and ev.namespace != self.namespace:
            return
        etype = _translate(ev, self._matches(ev.obj),
                           self._matches(ev.old) if ev.type == "MODIFIED" else False)
        if etype is not None:
            self.queue.put(ev.line(etype))

    def drop(self) -> None:
        self.queue.put(CLOSED)


def _translate(ev: Event, new_match: bool, old_match: bool) -> str | None:
    if ev.type != "MODIFIED":
        return ev.type if new_match else None
    if new_match and old_match:
        return "MODIFIED"
    if new_match:
        return "ADDED"
    if old_match:
        return "DELETED"
    return None


def bookmark_line(*, api_version: str, kind: str, rv: int,
                  initial_events_end: bool = False) -> bytes:
    end = b',"annotations":{"k8s.io/initial-events-end":"true"}' if initial_events_end else b""
    return (b'{"type":"BOOKMARK","object":{"kind":"' + kind.encode() + b'","apiVersion":"'
            + api_version.encode() + b'","metadata":{"resourceVersion":"' + str(rv).encode()
            + b'"' + end + b'}}}\n')


def error_line(status: dict) -> bytes:
    return b'{"type":"ERROR","object":' + json.dumps(status).encode() + b"}\n"
