"""RBAC decision table (allow, deny, no rule, group membership, every scope kind),
observe-only, the embedded allow-all default and policy validation errors."""

from __future__ import annotations

import pathlib

import pytest

from coral_lib.colony import rbac

PROD = {"env": "production"}
STAGING = {"env": "staging"}


def T(**kw) -> rbac.Target:  # noqa: N802 - reads like a constructor in the table
    kw.setdefault("agent_id", "agent-1")
    return rbac.Target(**kw)


# (case id, identity, extra groups, verb, target, allowed, rule, require_approval)
TABLE = [
    ("allow-group-member-staging", "alice", (), "exec", T(labels=STAGING), True,
     "sre-exec-staging", False),
    ("group-from-certificate", "zoe", ("sre",), "shell", T(labels=STAGING), True,
     "sre-exec-staging", False),
    ("deny-rule-beats-allow", "alice", (), "shell", T(labels=PROD), False,
     "no-shell-in-prod", False),
    ("deny-rule-hits-everyone", "carol", (), "shell", T(labels=PROD, namespace="payments"),
     False, "no-shell-in-prod", False),
    ("require-approval-prod", "bob", (), "exec", T(labels=PROD), True,
     "sre-exec-prod-approved", True),
    ("no-rule-unknown-identity", "mallory", (), "exec", T(labels=STAGING), False,
     rbac.NO_RULE, False),
    ("approve-verb-any-identity", "alice", (), "approve", T(), True, "anyone-approves", False),
    ("no-rule-verb-not-granted", "carol", (), "exec", T(service="checkout"), False,
     rbac.NO_RULE, False),
    ("no-rule-missing-env-label", "alice", (), "exec", T(), False, rbac.NO_RULE, False),
    ("scope-namespace", "carol", (), "exec", T(namespace="payments"), True,
     "carol-payments", False),
    ("scope-namespace-pattern", "carol", (), "exec", T(namespace="pay-eu"), True,
     "carol-payments", False),
    ("scope-namespace-miss", "carol", (), "exec", T(namespace="checkout"), False,
     rbac.NO_RULE, False),
    ("scope-service", "carol", (), "tap", T(service="checkout"), True,
     "carol-checkout-svc", False),
    ("scope-service-miss", "carol", (), "tap", T(service="payments"), False,
     rbac.NO_RULE, False),
    ("scope-pod", "erin", (), "exec", T(pod="web-7d9f"), True, "erin-web-pods", False),
    ("scope-pod-miss", "erin", (), "exec", T(pod="db-0"), False, rbac.NO_RULE, False),
    ("scope-pod-selector", "erin", (), "trace",
     T(labels={"app": "payments-api", "tier": "web"}), True, "erin-selector", False),
    ("scope-pod-selector-excluded", "erin", (), "trace",
     T(labels={"app": "payments-api", "tier": "db"}), False, rbac.NO_RULE, False),
    ("scope-node", "frank", (), "exec", T(node="node-1"), True, "frank-node", False),
    ("scope-node-miss", "frank", (), "exec", T(node="node-2"), False, rbac.NO_RULE, False),
    ("scope-runtime", "frank", (), "shell", T(runtime="host"), True,
     "frank-host-runtime", False),
    ("scope-runtime-miss", "frank", (), "shell", T(runtime="sidecar"), False,
     rbac.NO_RULE, False),
    ("read-only-group", "dave", (), "read", T(labels=PROD), True, "auditors-read", False),
    ("read-only-group-no-exec", "dave", (), "exec", T(labels=PROD), False, rbac.NO_RULE, False),
    ("observe-only-agent-refuses-exec", "alice", (), "exec",
     T(agent_id="agent-frozen", labels=STAGING), False, rbac.OBSERVE_ONLY, False),
    ("observe-only-agent-allows-read", "alice", (), "read",
     T(agent_id="agent-frozen", labels=STAGING), True, "sre-exec-staging", False),
    ("unknown-verb", "alice", (), "delete", T(labels=STAGING), False, rbac.NO_RULE, False),
]


@pytest.mark.parametrize(
    "identity, groups, verb, target, allowed, rule, approval",
    [case[1:] for case in TABLE], ids=[case[0] for case in TABLE],
)
def test_rbac_decision_table(policy_file: pathlib.Path, identity, groups, verb, target,
                             allowed, rule, approval) -> None:
    policy = rbac.load_policy(policy_file)
    decision = rbac.decide(policy, identity=identity, groups=groups, verb=verb, target=target)
    assert (decision.allowed, decision.rule, decision.require_approval) == (
        allowed, rule, approval), decision.reason
    assert decision.reason


def test_deny_by_default_with_empty_policy() -> None:
    decision = rbac.decide(rbac.parse_policy({}), identity="root", verb="read", target=T())
    assert not decision.allowed and decision.rule == rbac.NO_RULE
    assert "no rule allows root to read" in decision.reason


def test_approval_requirement_cannot_be_bypassed_by_a_broader_allow_rule() -> None:
    policy = rbac.parse_policy({"rules": [
        {"name": "broad", "identities": ["*"], "verbs": ["*"]},
        {"name": "prod-gate", "identities": ["*"], "verbs": ["exec"],
         "scope": {"env": "production"}, "requireApproval": True},
    ]})
    prod = rbac.decide(policy, identity="x", verb="exec", target=T(labels=PROD))
    assert (prod.allowed, prod.rule, prod.require_approval) == (True, "prod-gate", True)
    other = rbac.decide(policy, identity="x", verb="exec", target=T(labels=STAGING))
    assert (other.allowed, other.rule, other.require_approval) == (True, "broad", False)


@pytest.mark.parametrize("verb, allowed", [("read", True), ("exec", False), ("shell", False),
                                           ("tap", False), ("trace", False)])
def test_observe_only_colony_wide_refuses_active_verbs_allows_read(verb, allowed) -> None:
    policy = rbac.allow_all_policy(observe_only=True)
    decision = rbac.decide(policy, identity="admin", verb=verb, target=T())
    assert decision.allowed is allowed
    if not allowed:
        assert decision.rule == rbac.OBSERVE_ONLY and "observe-only" in decision.reason


def test_allow_all_policy_for_the_admin_identity_only() -> None:
    policy = rbac.allow_all_policy(identities=["admin"])
    for verb in rbac.VERBS:
        assert rbac.decide(policy, identity="admin", verb=verb, target=T()).allowed
    assert not rbac.decide(policy, identity="guest", verb="read", target=T()).allowed
    anyone = rbac.allow_all_policy()
    assert rbac.decide(anyone, identity="guest", verb="exec", target=T()).rule == (
        "embedded-default")


def test_target_env_comes_from_env_label() -> None:
    assert T(labels={"env": "qa"}).env == "qa" and T().env == ""


# -- validation: clear errors naming the rule and the key ----------------------------------

BAD = [
    ("unknown-top-key", {"rulez": []}, "top level: unknown key 'rulez'"),
    ("rules-not-list", {"rules": {"a": 1}}, "key 'rules'"),
    ("unknown-rule-key", {"rules": [{"name": "r", "identities": ["a"], "verbs": ["read"],
                                     "scopes": {}}]}, "rules[0] (r): unknown key 'scopes'"),
    ("bad-verb", {"rules": [{"name": "ops", "identities": ["a"], "verbs": ["rm"]}]},
     "rules[0] (ops): key 'verbs': ['rm']; accepted: read, exec, shell, tap, trace, approve"),
    ("missing-verbs", {"rules": [{"identities": ["a"]}]}, "rules[0]: key 'verbs'"),
    ("no-subject", {"rules": [{"name": "x", "verbs": ["read"]}]},
     "rules[0] (x): needs 'identities' or 'groups'"),
    ("bad-effect", {"rules": [{"identities": ["a"], "verbs": ["read"], "effect": "maybe"}]},
     "rules[0]: key 'effect': 'maybe'; accepted: allow, deny"),
    ("bad-scope-key", {"rules": [{"identities": ["a"], "verbs": ["read"],
                                  "scope": {"cluster": ["x"]}}]},
     "rules[0]: key 'scope': unknown key 'cluster'"),
    ("bad-runtime", {"rules": [{"identities": ["a"], "verbs": ["read"],
                                "scope": {"runtime": ["vm"]}}]},
     "rules[0]: key 'scope.runtime': ['vm']; accepted: host, daemonset, sidecar"),
    ("bad-selector", {"rules": [{"name": "s", "identities": ["a"], "verbs": ["read"],
                                 "scope": {"podSelector": "a=b=c,,"}}]},
     "rules[0] (s): key 'scope.podSelector'"),
    ("bad-approval-type", {"rules": [{"identities": ["a"], "verbs": ["read"],
                                      "requireApproval": "yes"}]},
     "rules[0]: key 'requireApproval': expected true or false"),
    ("duplicate-name", {"rules": [{"name": "d", "identities": ["a"], "verbs": ["read"]},
                                  {"name": "d", "identities": ["b"], "verbs": ["read"]}]},
     "rules[1] (d): key 'name': duplicate name"),
    ("bad-group-members", {"groups": {"sre": "alice"}}, "groups.sre: expected a list"),
    ("bad-observe-only", {"observeOnly": "no"}, "key 'observeOnly': expected true or false"),
    ("empty-scope-list", {"rules": [{"identities": ["a"], "verbs": ["read"],
                                     "scope": {"namespace": []}}]},
     "rules[0]: key 'scope.namespace': empty list would match nothing"),
    ("rule-not-mapping", {"rules": ["allow all"]}, "rules[0]: expected a mapping"),
]


@pytest.mark.parametrize("data, message", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_policy_error_names_rule_and_key(data, message) -> None:
    with pytest.raises(rbac.PolicyError) as failure:
        rbac.parse_policy(data, source="p.yaml")
    assert message in str(failure.value)
    assert str(failure.value).startswith("p.yaml: ")


def test_load_policy_unreadable_and_bad_yaml(tmp_path: pathlib.Path) -> None:
    with pytest.raises(rbac.PolicyError, match="policy file .*missing.yaml: file not found"):
        rbac.load_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n")
    with pytest.raises(rbac.PolicyError, match="bad.yaml: invalid YAML at line 2"):
        rbac.load_policy(bad)
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(rbac.PolicyError, match="deep.yaml: invalid YAML: nested too deeply"):
        rbac.load_policy(deep)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x80rules: []")
    with pytest.raises(rbac.PolicyError, match="binary.yaml: not UTF-8 text"):
        rbac.load_policy(binary)
