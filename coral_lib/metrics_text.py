"""Counters, gauges and histograms in Prometheus's text format (version 0.0.4) without
prometheus_client, for the agents (issue 15, a leaner agent).

Importing prometheus_client costs an agent about 1.1 MB of heap (33 modules: urllib,
wsgiref...) to serve its nine series; these few classes serve the same series, with the
same names, as prometheus_client writes them (counters with `_total`, histograms with
`_bucket`/`_count`/`_sum`), less the optional `_created` samples. The colony and the
webhook keep prometheus_client (coral_lib/metrics.py).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# (sample name suffix, labels, value) of one series
Sample = tuple[str, tuple[tuple[str, str], ...], float]
# (name as exposed, kind, help text, samples) of one family
FamilyData = tuple[str, str, str, list[Sample]]


def number(value: float) -> str:
    """A sample value as Prometheus (and prometheus_client) writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _label_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


class Family:
    """One metric: its children by label values; `kind` is counter, gauge or histogram."""

    kind = ""

    def __init__(self, name: str, doc: str, labelnames: Sequence[str] = (), *,
                 registry: Registry) -> None:
        self.name, self.doc, self.labelnames = name, doc, tuple(labelnames)
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], list[float]] = {}
        registry.register(self.collect)
        if not self.labelnames:  # the unlabelled series exists from the start
            self._child(())

    def _new(self) -> list[float]:
        return [0.0]

    def _child(self, values: tuple[str, ...]) -> list[float]:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
        with self._lock:
            return self._children.setdefault(tuple(str(v) for v in values), self._new())

    def labels(self, *values: str) -> _Child:
        return _Child(self, self._child(values))

    def _update(self, cell: list[float], value: float, *, add: bool) -> None:
        with self._lock:
            cell[0] = cell[0] + value if add else value

    def _samples(self, cell: list[float]) -> Iterator[tuple[str, tuple, float]]:
        yield ("_total" if self.kind == "counter" else ""), (), cell[0]

    def collect(self) -> list[FamilyData]:
        with self._lock:
            children = [(k, list(v)) for k, v in sorted(self._children.items())]
        out = []
        for values, cell in children:
            own = tuple(zip(self.labelnames, values, strict=True))
            out.extend((suffix, own + extra, v) for suffix, extra, v in self._samples(cell))
        name = self.name + ("_total" if self.kind == "counter" else "")
        return [(name, self.kind, self.doc, out)]

    # the unlabelled metric is its own only child
    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)

    def set(self, value: float) -> None:
        self.labels().set(value)

    def observe(self, value: float) -> None:
        self.labels().observe(value)


class _Child:
    def __init__(self, family: Family, cell: list[float]) -> None:
        self.family, self.cell = family, cell

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"{self.family.name}: counters only go up")
        self.family._update(self.cell, amount, add=True)

    def set(self, value: float) -> None:
        self.family._update(self.cell, float(value), add=False)

    def observe(self, value: float) -> None:
        self.family.observe_into(self.cell, value)


class Counter(Family):
    kind = "counter"


class Gauge(Family):
    kind = "gauge"


class Histogram(Family):
    """Cell layout: [sum, count, bucket counts (non-cumulative)..., over the last bound]."""

    kind = "histogram"

    def __init__(self, name: str, doc: str, labelnames: Sequence[str] = (), *,
                 buckets: Sequence[float], registry: Registry) -> None:
        self.bounds = tuple(float(b) for b in buckets)
        super().__init__(name, doc, labelnames, registry=registry)

    def _new(self) -> list[float]:
        return [0.0] * (len(self.bounds) + 3)

    def observe_into(self, cell: list[float], value: float) -> None:
        with self._lock:
            cell[0] += value
            cell[1] += 1
            cell[2 + bisect.bisect_left(self.bounds, value)] += 1  # le: bound >= value

    def _samples(self, cell: list[float]) -> Iterator[tuple[str, tuple, float]]:
        running = 0.0
        for bound, count in zip((*self.bounds, math.inf), cell[2:], strict=True):
            running += count
            yield "_bucket", (("le", number(bound)),), running
        yield "_count", (), cell[1]
        yield "_sum", (), cell[0]


class Registry:
    """The families and collectors one process serves (never a global one)."""

    def __init__(self) -> None:
        self._collectors: list[Callable[[], Iterable[FamilyData]]] = []

    def register(self, collect: Callable[[], Iterable[FamilyData]]) -> None:
        """`collect` returns the families to write at each scrape."""
        self._collectors.append(collect)

    def families(self) -> list[FamilyData]:
        return [family for collect in self._collectors for family in collect()]

    def exposition(self) -> tuple[bytes, str]:
        """Every family in Prometheus text format, and its content type."""
        return render(self.families()).encode(), CONTENT_TYPE

    def get_sample_value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample's value (None when absent), as prometheus_client's registry has it."""
        wanted = tuple(sorted((labels or {}).items()))
        for family, _kind, _doc, samples in self.families():
            base = family[:-len("_total")] if family.endswith("_total") else family
            for suffix, own, value in samples:
                if base + suffix == name and tuple(sorted(own)) == wanted:
                    return value
        return None


def render(families: Iterable[FamilyData]) -> str:
    lines = []
    for name, kind, doc, samples in families:
        base = name[:-len("_total")] if kind == "counter" else name
        lines += [f"# HELP {name} {_help(doc)}", f"# TYPE {name} {kind}"]
        for suffix, labels, value in samples:
            text = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels)
            lines.append(f"{base}{suffix}{{{text}}} {number(value)}" if text
                         else f"{base}{suffix} {number(value)}")
    return "\n".join(lines) + "\n"


def counter_family(name: str, doc: str, value: float) -> FamilyData:
    """A counter read at scrape time (what a collector returns): `name_total`."""
    return name + "_total", "counter", doc, [("_total", (), float(value))]
