"""Operator target selectors (k=v,k2!=v2,k3,!k4) and "unknown service, did you mean"."""

from __future__ import annotations

import pytest

from coral_lib import selection

LABELS = {"app": "api", "tier": "web", "coral.io/enabled": "true", "empty": ""}


@pytest.mark.parametrize(("text", "expected"), [
    ("app=api", True), ("app==api", True), ("app=db", False), ("app!=db", True),
    ("app!=api", False), ("missing!=x", True), ("tier", True), ("missing", False),
    ("!missing", True), ("!tier", False), ("app=api,tier=web", True), ("app=api,tier=db", False),
    ("coral.io/enabled=true", True), (" app = api , tier ", True), ("empty=", True),
])
def test_selector_matches(text, expected):
    assert selection.selector_matches(selection.parse_selector(text), LABELS) is expected


def test_parse_selector_terms_and_round_trip():
    sel = selection.parse_selector("app=api,tier!=db,k3,!k4")
    assert sel.terms == (selection.Term("app", "=", "api"), selection.Term("tier", "!=", "db"),
                         selection.Term("k3", "exists"), selection.Term("k4", "absent"))
    assert str(sel) == "app=api,tier!=db,k3,!k4"


@pytest.mark.parametrize("text", ["", "  ", "app=api,", "=api", "a b=c", "app=a b", "app in (a)",
                                  "!", "-app=x", "app=x=y", "!=x"])
def test_parse_selector_bad_input_says_what_is_accepted(text):
    with pytest.raises(selection.SelectorError) as caught:
        selection.parse_selector(text)
    message = str(caught.value)
    assert "k=v, k!=v, k (exists) or !k (absent)" in message
    if text.strip():
        assert repr(text) in message


def test_selector_error_is_a_value_error():
    assert issubclass(selection.SelectorError, ValueError)


@pytest.mark.parametrize(("name", "expected"), [
    ("paymnets-api", ["payments-api", "payments"]),
    ("pay", ["payments", "payments-api"]),
    ("API", ["api", "payments-api"]),
    ("zzzz", []),
])
def test_unknown_service_close_matches(name, expected):
    candidates = ["payments-api", "payments", "api", "checkout", "api"]
    assert selection.close_matches(name, candidates) == expected


def test_close_matches_limits_to_n():
    candidates = [f"svc-{i}" for i in range(20)]
    assert len(selection.close_matches("svc", candidates, n=3)) == 3


def test_parse_label_pairs_for_include_label_flags():
    assert selection.parse_label_pairs(["coral.io/enabled=true", "tier = web"],
                                       what="--include-label") == {
        "coral.io/enabled": "true", "tier": "web"}


@pytest.mark.parametrize("item", ["tier", "=x", "a b=c", "k=v w"])
def test_parse_label_pairs_bad_item_names_flag(item):
    with pytest.raises(ValueError, match=f"invalid --exclude-label {item!r}: expected k=v"):
        selection.parse_label_pairs([item], what="--exclude-label")
