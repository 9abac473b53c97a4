"""Label and field selectors: parsed once into predicates (pure functions)."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.support.kubeapi import errors

Predicate = Callable[[dict], bool]

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_CMP_RE = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|!=|=)\s*([A-Za-z0-9._-]*)\s*$")
_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _split_terms(text: str) -> list[str]:
    """Split on commas outside parentheses: `a in (x,y),b` -> two terms."""
    terms, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    terms.append("".join(cur))
    return [t for t in (s.strip() for s in terms) if t]


def _label_term(term: str) -> Callable[[dict], bool]:
    m = _CMP_RE.match(term)
    if m:
        key, op, value = m.groups()
        _check_key(key, term)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    m = _SET_RE.match(term)
    if m:
        neg, key, op, values = m.groups()
        _check_key(key, term)
        if op:
            if neg:
                raise _bad_label(term)
            vals = frozenset(v.strip() for v in values.split(",") if v.strip())
            if op == "in":
                return lambda labels: labels.get(key) in vals
            return lambda labels: labels.get(key) not in vals
        if neg:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise _bad_label(term)


def _check_key(key: str, term: str) -> None:
    if not _KEY_RE.match(key):
        raise _bad_label(term)


def _bad_label(term: str) -> errors.ApiError:
    return errors.bad_request(
        f"unable to parse requirement: labelSelector term {term!r}: expected key, key=value, "
        "key==value, key!=value, key in (a,b), key notin (a,b), !key")


def parse_label_selector(text: str | None) -> Predicate | None:
    """`labelSelector` query string -> predicate over an object (None = everything)."""
    if not text:
        return None
    tests = [_label_term(t) for t in _split_terms(text)]

    def match(obj: dict) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(t(labels) for t in tests)

    return match


def match_label_selector(selector: dict | None, labels: dict | None) -> bool:
    """A metav1.LabelSelector object (matchLabels + matchExpressions); None matches all."""
    if selector is None:
        return True
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# Field selectors the real API server supports for the kinds we serve.
FIELDS: dict[str, Callable[[dict], str]] = {
    "metadata.name": lambda o: o.get("metadata", {}).get("name", ""),
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace", ""),
    "spec.nodeName": lambda o: (o.get("spec") or {}).get("nodeName", "") or "",
    "spec.schedulerName": lambda o: (o.get("spec") or {}).get("schedulerName", "") or "",
    "spec.serviceAccountName": lambda o: (o.get("spec") or {}).get("serviceAccountName", ""),
    "status.phase": lambda o: (o.get("status") or {}).get("phase", "") or "",
    "status.podIP": lambda o: (o.get("status") or {}).get("podIP", "") or "",
    "type": lambda o: o.get("type", "") or "",
}


def parse_field_selector(text: str | None) -> Predicate | None:
    if not text:
        return None
    tests = []
    for term in _split_terms(text):
        m = re.match(r"^\s*([A-Za-z.]+)\s*(==|!=|=)\s*(.*?)\s*$", term)
        if not m:
            raise errors.bad_request(
                f"invalid fieldSelector term {term!r}: expected field=value or field!=value")
        field, op, value = m.groups()
        getter = FIELDS.get(field)
        if getter is None:
            raise errors.bad_request(
                f'field label not supported: "{field}"; supported: {sorted(FIELDS)}')
        tests.append((getter, op == "!=", value))

    def match(obj: dict) -> bool:
        return all((g(obj) != v) if neg else (g(obj) == v) for g, neg, v in tests)

    return match


def both(a: Predicate | None, b: Predicate | None) -> Predicate | None:
    if a is None:
        return b
    if b is None:
        return a
    return lambda o: a(o) and b(o)
