"""The fixture's pure parts, table-tested: selectors, patches, watch event translation."""

from __future__ import annotations

import pytest

from tests.support.kubeapi import errors, patches, selectors, watch


def _obj(labels):
    return {"metadata": {"labels": labels}}


@pytest.mark.parametrize("text, labels, expected", [
    ("a=1", {"a": "1"}, True), ("a=1", {"a": "2"}, False), ("a!=1", {}, True),
    ("a in (1, 2)", {"a": "2"}, True), ("a notin (1,2)", {"a": "3"}, True),
    ("a notin (1,2)", {}, True), ("a", {"a": ""}, True), ("!a", {"a": "x"}, False),
    ("example.com/k=v,b", {"example.com/k": "v", "b": "1"}, True),
])
def test_label_selector_terms(text, labels, expected):
    assert selectors.parse_label_selector(text)(_obj(labels)) is expected


@pytest.mark.parametrize("text", ["a in", "=x", "a in (x", "!a in (x)", "a==b==c"])
def test_bad_label_selectors_raise_400(text):
    with pytest.raises(errors.ApiError) as err:
        selectors.parse_label_selector(text)
    assert err.value.code == 400


@pytest.mark.parametrize("selector, labels, expected", [
    (None, {}, True), ({}, {"a": "1"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "1"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "1"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": "1"}, True),
])
def test_label_selector_objects(selector, labels, expected):
    assert selectors.match_label_selector(selector, labels) is expected


@pytest.mark.parametrize("target, patch, expected", [  # RFC 7386 examples
    ({"a": "b"}, {"a": "c"}, {"a": "c"}), ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}), ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
])
def test_merge_patch(target, patch, expected):
    assert patches.merge_patch(target, patch) == expected


def test_strategic_merge_directives():
    pod = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}],
                    "volumes": [{"name": "v"}]}, "metadata": {"finalizers": ["x"]}}
    out = patches.strategic_merge(pod, {
        "$setElementOrder/containers": [{"name": "a"}],
        "spec": {"containers": [{"name": "b", "$patch": "delete"},
                                {"name": "a", "image": "2"}],
                 "volumes": [{"$patch": "replace"}, {"name": "w"}]},
        "metadata": {"finalizers": ["y"], "$deleteFromPrimitiveList/finalizers": ["x"]}})
    assert out["spec"]["containers"] == [{"name": "a", "image": "2"}]
    assert out["spec"]["volumes"] == [{"name": "w"}]
    assert out["metadata"]["finalizers"] == ["y"]


def test_service_ports_merge_on_port():
    svc = {"spec": {"ports": [{"port": 80, "name": "http"}]}}
    out = patches.strategic_merge(svc, {"spec": {"ports": [{"port": 443, "name": "https"}]}})
    assert [p["port"] for p in out["spec"]["ports"]] == [80, 443]


def test_apply_removes_fields_dropped_by_the_same_manager():
    existing = {"data": {"a": "1", "b": "2", "other": "kept"}}
    out = patches.apply_patch(existing, {"data": {"a": "1"}}, {"data": {"a": "1", "b": "2"}})
    assert out == {"data": {"a": "1", "other": "kept"}}


@pytest.mark.parametrize("etype, new, old, expected", [
    ("ADDED", True, False, "ADDED"), ("ADDED", False, False, None),
    ("MODIFIED", True, True, "MODIFIED"), ("MODIFIED", True, False, "ADDED"),
    ("MODIFIED", False, True, "DELETED"), ("MODIFIED", False, False, None),
    ("DELETED", True, False, "DELETED"),
])
def test_watch_selector_transitions(etype, new, old, expected):
    ev = watch.Event(1, "pods", etype, "ns", {}, b"{}")
    assert watch._translate(ev, new, old) == expected
