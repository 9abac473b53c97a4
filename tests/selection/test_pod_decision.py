"""Issue 4 acceptance: the discovery filter precedence table, case by case."""

from __future__ import annotations

import pytest

from coral_lib import selection
from tests.selection import conftest

F = conftest.filters
OFF = {"coral.io/discover": "false"}
ON = {"coral.io/discover": "true"}

# (case, namespace, labels, annotations, filters, included, reason fragment)
TABLE = [
    ("1 annotation false excludes with no filters", "app", {}, OFF, F(), False,
     'coral.io/discover: "false"'),
    ("1 annotation false beats include lists", "app", {"e": "1"}, OFF,
     F(includeNamespaces=["app"], includeLabels={"e": "1"}), False, 'discover: "false"'),
    ("1 annotation false is case-insensitive", "app", {}, {"coral.io/discover": "False"}, F(),
     False, 'discover: "false"'),
    ("2 exclude namespace beats include namespace", "app", {}, {},
     F(includeNamespaces=["app"], excludeNamespaces=["app"]), False, "in excludeNamespaces"),
    ("2 exclude namespace beats annotation true", "app", {}, ON, F(excludeNamespaces=["app"]),
     False, "in excludeNamespaces"),
    ("3 exclude label beats include label", "app", {"e": "1", "skip": "y"}, {},
     F(includeLabels={"e": "1"}, excludeLabels={"skip": "y"}), False, "skip=y is in excludeLabels"),
    ("3 exclude label beats annotation true", "app", {"skip": "y"}, ON,
     F(excludeLabels={"skip": "y"}), False, "excludeLabels"),
    ("3 any one exclude label pair excludes", "app", {"b": "2"}, {},
     F(excludeLabels={"a": "1", "b": "2"}), False, "b=2 is in excludeLabels"),
    ("3 exclude label with other value does not exclude", "app", {"skip": "n"}, {},
     F(excludeLabels={"skip": "y"}), True, "no filter"),
    ("4 annotation true beats include namespaces", "other", {}, ON,
     F(includeNamespaces=["app"]), True, 'discover: "true"'),
    ("4 annotation true beats include labels", "app", {}, ON, F(includeLabels={"e": "1"}), True,
     'discover: "true"'),
    ("4 annotation true includes in a system namespace", "kube-system", {}, ON, F(), True,
     'discover: "true"'),
    ("5 include namespaces must match", "other", {}, {}, F(includeNamespaces=["app"]), False,
     "not in includeNamespaces"),
    ("5 include namespaces match", "app", {}, {}, F(includeNamespaces=["app"]), True,
     "matched the include lists"),
    ("6 include labels must all match", "app", {"e": "1"}, {},
     F(includeLabels={"e": "1", "t": "w"}), False, "t=w of includeLabels is missing"),
    ("6 include labels match", "app", {"e": "1", "t": "w", "x": "y"}, {},
     F(includeLabels={"e": "1", "t": "w"}), True, "matched the include lists"),
    ("5+6 both include lists must match", "app", {}, {},
     F(includeNamespaces=["app"], includeLabels={"e": "1"}), False, "includeLabels is missing"),
    ("7 kube-system excluded by default", "kube-system", {}, {}, F(), False,
     "system namespace kube-system"),
    ("7 kube-public excluded by default", "kube-public", {}, {}, F(), False, "kube-public"),
    ("7 kube-node-lease excluded by default", "kube-node-lease", {}, {}, F(), False,
     "kube-node-lease"),
    ("7 system namespace excluded even when include labels match", "kube-system", {"e": "1"}, {},
     F(includeLabels={"e": "1"}), False, "not listed in includeNamespaces"),
    ("7 system namespace included when listed explicitly", "kube-system", {}, {},
     F(includeNamespaces=["kube-system"]), True, "matched the include lists"),
    ("8 no filters include", "default", {}, {}, F(), True, "no filter"),
    ("8 unrelated annotation value", "default", {}, {"coral.io/discover": "maybe"}, F(), True,
     "no filter"),
]


@pytest.mark.parametrize(("case", "namespace", "labels", "annotations", "filters", "included",
                          "reason"), TABLE, ids=[c[0] for c in TABLE])
def test_filter_precedence_table(case, namespace, labels, annotations, filters, included, reason):
    decision = selection.pod_decision(namespace=namespace, labels=labels, annotations=annotations,
                                      filters=filters)
    assert decision.included is included
    assert reason in decision.reason


def test_filter_precedence_issue_example_config():
    filters = F(includeNamespaces=["payments", "checkout"],
                includeLabels={"coral.io/enabled": "true"}, excludeNamespaces=["kube-system"])
    enabled = {"coral.io/enabled": "true"}

    def included(ns: str, labels: dict, annotations: dict | None = None) -> bool:
        return selection.pod_decision(namespace=ns, labels=labels, annotations=annotations or {},
                                      filters=filters).included

    assert included("payments", enabled)
    assert not included("payments", {})
    assert not included("billing", enabled)
    assert included("billing", {}, ON)
    assert not included("kube-system", enabled, ON)
