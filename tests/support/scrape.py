"""Read the plain-HTTP /metrics, /healthz and /readyz of real Coral processes."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client import parser


def get(port: int, path: str, *, host: str = "127.0.0.1") -> tuple[int, str]:
    """(status, body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def samples(port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics: (name, frozenset(labels.items())) -> value."""
    status, text = get(port, "/metrics")
    assert status == 200, text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in parser.text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    """One sample's value; 0.0 when the series is absent."""
    return found.get((name, frozenset(labels.items())), 0.0)


def names(port: int) -> set[str]:
    """The sample names a process exposes (e.g. x_total, x_bucket, x_count)."""
    return {name for name, _ in samples(port)}
