"""Pure filters: which pods a DaemonSet agent discovers, and operator target selectors.

Pod discovery precedence (`pod_decision`), first matching row decides:

| # | condition                                                        | result  |
|---|------------------------------------------------------------------|---------|
| 1 | pod annotation `coral.io/discover: "false"`                      | exclude |
| 2 | namespace in `excludeNamespaces`                                 | exclude |
| 3 | pod has any `excludeLabels` pair (k=v)                           | exclude |
| 4 | pod annotation `coral.io/discover: "true"`                       | include |
| 5 | `includeNamespaces` non-empty and namespace not in it            | exclude |
| 6 | `includeLabels` non-empty and pod lacks one of its pairs         | exclude |
| 7 | namespace is kube-system, kube-public or kube-node-lease and not | exclude |
|   | listed explicitly in `includeNamespaces`                         |         |
| 8 | otherwise                                                        | include |

So exclude lists beat include lists, the pod's own `discover: "false"` beats everything,
`discover: "true"` beats the include lists and the system-namespace rule, and when both
include lists are given both must match (includeLabels pairs all must match, like a
selector; any one excludeLabels pair is enough to exclude).

Target selectors (`parse_selector`): comma separated terms `k=v` (or `k==v`), `k!=v`,
`k` (key exists), `!k` (key absent); all terms must match. Set-based terms
(`k in (a,b)`) are not supported.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Iterable, Mapping

if typing.TYPE_CHECKING:  # models only: this module stays free of the config loader's I/O
    from coral_lib.config import models as config

DISCOVER_ANNOTATION = "coral.io/discover"
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY = re.compile(rf"([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}")
_VALUE = re.compile(rf"({_NAME})?")
_ACCEPTED = "comma separated k=v, k!=v, k (exists) or !k (absent), e.g. app=api,tier!=db"


@dataclasses.dataclass(frozen=True)
class Decision:
    included: bool
    reason: str


def pod_decision(
    *, namespace: str, labels: Mapping[str, str], annotations: Mapping[str, str],
    filters: config.KubernetesDiscovery,
) -> Decision:
    """Apply the precedence table in the module docstring to one pod."""
    discover = str(annotations.get(DISCOVER_ANNOTATION, "")).strip().lower()
    if discover == "false":
        return Decision(False, f'annotation {DISCOVER_ANNOTATION}: "false"')
    if namespace in filters.exclude_namespaces:
        return Decision(False, f"namespace {namespace} is in excludeNamespaces")
    hit = next((f"{k}={v}" for k, v in filters.exclude_labels.items() if labels.get(k) == v), None)
    if hit:
        return Decision(False, f"label {hit} is in excludeLabels")
    if discover == "true":
        return Decision(True, f'annotation {DISCOVER_ANNOTATION}: "true"')
    if filters.include_namespaces and namespace not in filters.include_namespaces:
        return Decision(False, f"namespace {namespace} is not in includeNamespaces")
    missing = next((f"{k}={v}" for k, v in filters.include_labels.items()
                    if labels.get(k) != v), None)
    if missing:
        return Decision(False, f"label {missing} of includeLabels is missing")
    if namespace in SYSTEM_NAMESPACES and namespace not in filters.include_namespaces:
        return Decision(False, f"system namespace {namespace} is not listed in includeNamespaces")
    return Decision(True, "matched the include lists" if _has_includes(filters) else "no filter")


def _has_includes(filters: config.KubernetesDiscovery) -> bool:
    return bool(filters.include_namespaces or filters.include_labels)


class SelectorError(ValueError):
    """A selector the user typed cannot be parsed; the message says what is accepted."""


@dataclasses.dataclass(frozen=True)
class Term:
    key: str
    op: str  # "=", "!=", "exists", "absent"
    value: str = ""


@dataclasses.dataclass(frozen=True)
class Selector:
    terms: tuple[Term, ...]

    def __str__(self) -> str:
        shown = {"=": "{k}={v}", "!=": "{k}!={v}", "exists": "{k}", "absent": "!{k}"}
        return ",".join(shown[t.op].format(k=t.key, v=t.value) for t in self.terms)


def parse_selector(text: str) -> Selector:
    """Parse `k=v,k2!=v2,k3,!k4`; raise SelectorError naming the bad term."""
    if not text or not text.strip():
        raise SelectorError(f"empty selector; expected {_ACCEPTED}")
    return Selector(tuple(_parse_term(part.strip(), text) for part in text.split(",")))


def _parse_term(part: str, text: str) -> Term:
    if "!=" in part:
        key, _, value = part.partition("!=")
        term = Term(key.strip(), "!=", value.strip())
    elif "=" in part:
        key, _, value = part.partition("=")
        term = Term(key.strip(), "=", value.strip().removeprefix("="))
    elif part.startswith("!"):
        term = Term(part[1:].strip(), "absent")
    else:
        term = Term(part, "exists")
    if not _KEY.fullmatch(term.key) or not _VALUE.fullmatch(term.value):
        raise SelectorError(f"invalid selector {text!r}: bad term {part!r}; expected {_ACCEPTED}")
    return term


def selector_matches(selector: Selector, labels: Mapping[str, str]) -> bool:
    """True when every term matches the labels."""
    return all(_term_matches(term, labels) for term in selector.terms)


def _term_matches(term: Term, labels: Mapping[str, str]) -> bool:
    if term.op == "=":
        return labels.get(term.key) == term.value
    if term.op == "!=":
        return labels.get(term.key) != term.value  # like kubectl: a missing key matches
    if term.op == "exists":
        return term.key in labels
    return term.key not in labels


def parse_label_pairs(items: Iterable[str], *, what: str) -> dict[str, str]:
    """`["k=v", "k2=v2"]` (e.g. repeated --include-label flags) -> dict; ValueError naming
    `what` (the flag) and the bad item."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _KEY.fullmatch(key.strip()) or not _VALUE.fullmatch(value.strip()):
            raise ValueError(f"invalid {what} {item!r}: expected k=v, e.g. coral.io/enabled=true")
        pairs[key.strip()] = value.strip()
    return pairs


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Names like `name` for "unknown service, did you mean ...": prefix/substring first."""
    unique = sorted(set(candidates))
    lowered = name.lower()
    contains = [c for c in unique if lowered and lowered in c.lower()]
    contains.sort(key=lambda c: (not c.lower().startswith(lowered), len(c), c))
    similar = difflib.get_close_matches(name, unique, n=n, cutoff=0.6)
    ordered = list(dict.fromkeys([*contains, *similar]))
    return ordered[:n]
