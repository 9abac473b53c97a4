"""Group commit: callers that queue while another one writes are written together.

Each caller queues its item and takes the writer's lock; the caller that gets the lock and
finds its item still queued takes the whole queue and writes it with `write_all`, which
returns one outcome per item (a result, or the exception that item's caller must get).
Every caller returns only once its own item's outcome is set, so nothing is reported
written before the transaction holding it committed.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence


@dataclasses.dataclass
class _Queued:
    item: object
    done: bool = False
    outcome: object = None


class GroupCommit:
    """A queue in front of a writer lock (held by the caller that writes the queue)."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._queue: list[_Queued] = []
        self._queue_lock = threading.Lock()

    def submit(self, item: object,
               write_all: Callable[[Sequence[object]], list[object]]) -> object:
        """Queue `item`; return its outcome, or raise it when it is an exception.
        `write_all(items)` runs with the lock held and must return one outcome per item
        (never raise: an exception it lets out is every queued caller's outcome)."""
        mine = _Queued(item)
        with self._queue_lock:
            self._queue.append(mine)
        with self._lock:
            if not mine.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    outcomes = write_all([queued.item for queued in batch])
                except Exception as exc:  # noqa: BLE001 - every queued caller must hear it
                    outcomes = [exc] * len(batch)
                for queued, outcome in zip(batch, outcomes, strict=True):
                    queued.outcome, queued.done = outcome, True
        if isinstance(mine.outcome, BaseException):
            raise mine.outcome
        return mine.outcome
