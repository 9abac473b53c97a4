"""Fuzz the pure policy core: any YAML-shaped input gives a Policy or a PolicyError, never a
crash; deny rules always beat allow rules; an empty policy denies everything."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from coral_lib.colony import rbac

names = st.text(alphabet=string.ascii_lowercase + "-*", min_size=0, max_size=6)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), names)
yamlish = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(names, st.sampled_from(
        [*rbac.TOP_KEYS, *rbac.RULE_KEYS, *rbac.SCOPE_KEYS])), inner, max_size=5)),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(yamlish)
def test_parse_policy_never_crashes_on_any_input(data) -> None:
    try:
        policy = rbac.parse_policy(data)
    except rbac.PolicyError as exc:
        assert str(exc).startswith("policy: ")
    else:
        assert isinstance(policy, rbac.Policy)


targets = st.builds(
    rbac.Target, agent_id=names, service=names, namespace=names, pod=names, node=names,
    runtime=st.sampled_from(["", *rbac.RUNTIMES]),
    labels=st.dictionaries(st.sampled_from(["env", "app"]), names, max_size=2))


@settings(max_examples=200, deadline=None)
@given(identity=names, verb=st.sampled_from(rbac.VERBS), target=targets)
def test_deny_rule_always_beats_allow_and_empty_policy_denies(identity, verb, target) -> None:
    both = rbac.parse_policy({"rules": [
        {"name": "allow", "identities": ["*"], "verbs": ["*"]},
        {"name": "deny", "effect": "deny", "identities": ["*"], "verbs": ["*"]},
    ]})
    decision = rbac.decide(both, identity=identity, verb=verb, target=target)
    assert (decision.allowed, decision.rule) == (False, "deny")
    empty = rbac.decide(rbac.parse_policy(None), identity=identity, verb=verb, target=target)
    assert (empty.allowed, empty.rule) == (False, rbac.NO_RULE)
