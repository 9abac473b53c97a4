"""Who may do what where: the colony's RBAC policy (YAML) and its pure `decide()`.

Policy file:

    observeOnly: false                 # colony-wide: exec/shell/tap/trace refused, read allowed
    observeOnlyAgents: [node-agent-7]  # the same for single agents
    groups:
      sre: [alice, bob]
    rules:
      - name: sre-exec-staging         # optional, default "rules[<index>]"; unique
        effect: allow                  # allow (default) | deny
        identities: [carol]            # identities from client certificates or tokens; "*" = any
        groups: [sre]                  # a subject matches when it is listed or in a listed group
        verbs: [read, exec, shell]     # read exec shell tap trace approve admin, or "*"
                                       # admin: revoke agents, create join tokens (no scope)
        scope:                         # every key given must match; a missing key matches all
          env: [staging]               # the target's labels["env"]
          namespace: [payments, "shop-*"]   # shell-style patterns for names
          service: [api]
          pod: ["api-*"]
          node: [node-1]
          runtime: [host, daemonset, sidecar]
          podSelector: "app=payments-api,tier!=db"   # label selector on the target's labels
        requireApproval: false

Evaluation order (first step that applies decides):

1. unknown verb                                   -> deny ("unknown verb")
2. observe-only (colony-wide or the target agent) and verb is exec/shell/tap/trace
                                                   -> deny (rule "observe-only")
3. any matching `effect: deny` rule, in file order -> deny (that rule)
4. matching allow rules                           -> allow, with the first one's name; when any
   matching allow rule says requireApproval, approval is required (and that rule is named),
   so a broad allow rule cannot switch off a narrower approval requirement
5. nothing matched                                 -> deny (rule "no rule")
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Mapping, Sequence

from coral_lib import selection, yamlfile

VERBS = ("read", "exec", "shell", "tap", "trace", "approve", "admin")
ACTIVE_VERBS = frozenset({"exec", "shell", "tap", "trace"})
RUNTIMES = ("host", "daemonset", "sidecar")
NAME_SCOPES = ("env", "namespace", "service", "pod", "node")
SCOPE_KEYS = (*NAME_SCOPES, "runtime", "podSelector")
RULE_KEYS = ("name", "effect", "identities", "groups", "verbs", "scope", "requireApproval")
TOP_KEYS = ("observeOnly", "observeOnlyAgents", "groups", "rules")
NO_RULE = "no rule"
OBSERVE_ONLY = "observe-only"


class PolicyError(ValueError):
    """The policy file is unreadable or invalid; the message names the rule and key."""


@dataclasses.dataclass(frozen=True)
class Target:
    """What an operation would touch. `env` comes from labels["env"]."""

    agent_id: str = ""
    service: str = ""
    namespace: str = ""
    pod: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    node: str = ""
    runtime: str = ""

    @property
    def env(self) -> str:
        return self.labels.get("env", "")


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str
    require_approval: bool
    reason: str


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    effect: str = "allow"
    identities: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    verbs: frozenset[str] = frozenset()
    scope: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    pod_selector: selection.Selector | None = None
    require_approval: bool = False


@dataclasses.dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    groups: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    observe_only: bool = False
    observe_only_agents: frozenset[str] = frozenset()


def allow_all_policy(
    *, identities: Sequence[str] = ("*",), observe_only: bool = False
) -> Policy:
    """The embedded default: the given identities (default: any authenticated one) may do
    everything without approval."""
    rule = Rule(name="embedded-default", identities=frozenset(identities),
                verbs=frozenset(VERBS))
    return Policy(rules=(rule,), observe_only=observe_only)


# -- deciding (pure) ---------------------------------------------------------------------

def decide(
    policy: Policy, *, identity: str, groups: Sequence[str] = (), verb: str, target: Target
) -> Decision:
    """Allow or deny one verb on one target (see the module docstring for the order)."""
    if verb not in VERBS:
        return Decision(False, NO_RULE, False, f"unknown verb {verb!r}; accepted: {VERBS}")
    if verb in ACTIVE_VERBS and (
        policy.observe_only or target.agent_id in policy.observe_only_agents
    ):
        where = "the colony" if policy.observe_only else f"agent {target.agent_id}"
        return Decision(False, OBSERVE_ONLY, False,
                        f"{where} is observe-only: {verb} refused, read allowed")
    member_of = _groups_of(policy, identity, groups)
    matching = [r for r in policy.rules if _matches(r, identity, member_of, verb, target)]
    denied = next((r for r in matching if r.effect == "deny"), None)
    if denied:
        return Decision(False, denied.name, False,
                        f"rule {denied.name!r} denies {identity} {verb} on {_describe(target)}")
    allowed = [r for r in matching if r.effect == "allow"]
    if not allowed:
        return Decision(False, NO_RULE, False,
                        f"no rule allows {identity} to {verb} on {_describe(target)}")
    gate = next((r for r in allowed if r.require_approval), None)
    if gate:
        return Decision(True, gate.name, True,
                        f"rule {gate.name!r} allows {verb} after approval by another identity")
    return Decision(True, allowed[0].name, False, f"rule {allowed[0].name!r} allows {verb}")


def _groups_of(policy: Policy, identity: str, groups: Sequence[str]) -> frozenset[str]:
    listed = {name for name, members in policy.groups.items() if identity in members}
    return frozenset(groups) | listed


def _matches(rule: Rule, identity: str, member_of: frozenset[str], verb: str,
             target: Target) -> bool:
    subject = "*" in rule.identities or identity in rule.identities or bool(
        rule.groups & member_of)
    if not subject or not ("*" in rule.verbs or verb in rule.verbs):
        return False
    return _in_scope(rule, target)


def _in_scope(rule: Rule, target: Target) -> bool:
    values = {"env": target.env, "namespace": target.namespace, "service": target.service,
              "pod": target.pod, "node": target.node, "runtime": target.runtime}
    for key, patterns in rule.scope.items():
        if not any(fnmatch.fnmatchcase(values[key], p) for p in patterns):
            return False
    if rule.pod_selector is not None:
        return selection.selector_matches(rule.pod_selector, target.labels)
    return True


def _describe(target: Target) -> str:
    parts = [f"{k}={v}" for k, v in (("agent", target.agent_id), ("service", target.service),
                                     ("namespace", target.namespace), ("pod", target.pod))
             if v]
    return " ".join(parts) or "(no target)"


# -- loading and validating -----------------------------------------------------------------

def load_policy(path: str | os.PathLike) -> Policy:
    """Read and validate a policy file; PolicyError names the file, rule and key."""
    try:
        data = yamlfile.load(path, source=f"policy file {os.fspath(path)}")
    except yamlfile.YamlFileError as exc:
        raise PolicyError(str(exc)) from None
    return parse_policy(data, source=os.fspath(path))


def parse_policy(data: object, *, source: str = "policy") -> Policy:
    """Validate already-parsed YAML data (pure)."""
    if data is None:
        data = {}
    _check_mapping(data, f"{source}: top level", TOP_KEYS)
    groups = {name: frozenset(_names(members, f"{source}: groups.{name}"))
              for name, members in _mapping(data.get("groups"), f"{source}: groups").items()}
    rules_data = data.get("rules") or []
    if not isinstance(rules_data, list):
        raise PolicyError(f"{source}: key 'rules': expected a list of rules")
    rules = tuple(_parse_rule(item, index=i, source=source) for i, item in enumerate(rules_data))
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.name in seen:
            raise PolicyError(f"{source}: rules[{i}] ({rule.name}): key 'name': duplicate name")
        seen.add(rule.name)
    return Policy(
        rules=rules, groups=groups,
        observe_only=_bool(data.get("observeOnly", False), f"{source}: key 'observeOnly'"),
        observe_only_agents=frozenset(_names(data.get("observeOnlyAgents") or [],
                                             f"{source}: key 'observeOnlyAgents'")),
    )


def _parse_rule(item: object, *, index: int, source: str) -> Rule:
    name = item.get("name") if isinstance(item, dict) else None
    where = f"{source}: rules[{index}]" + (f" ({name})" if isinstance(name, str) else "")
    _check_mapping(item, where, RULE_KEYS)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise PolicyError(f"{where}: key 'name': expected a non-empty string")
    effect = item.get("effect", "allow")
    if effect not in ("allow", "deny"):
        raise PolicyError(f"{where}: key 'effect': {effect!r}; accepted: allow, deny")
    identities = _names(item.get("identities") or [], f"{where}: key 'identities'")
    groups = _names(item.get("groups") or [], f"{where}: key 'groups'")
    if not identities and not groups:
        raise PolicyError(f"{where}: needs 'identities' or 'groups' (use identities: ['*'] "
                          "for every authenticated identity)")
    verbs = _names(item.get("verbs"), f"{where}: key 'verbs'")
    bad = [v for v in verbs if v != "*" and v not in VERBS]
    if not verbs or bad:
        raise PolicyError(f"{where}: key 'verbs': {bad or 'empty'}; accepted: "
                          f"{', '.join(VERBS)} or '*'")
    scope, selector = _parse_scope(item.get("scope") or {}, where)
    return Rule(
        name=name or f"rules[{index}]", effect=effect, identities=frozenset(identities),
        groups=frozenset(groups), verbs=frozenset(verbs), scope=scope, pod_selector=selector,
        require_approval=_bool(item.get("requireApproval", False),
                               f"{where}: key 'requireApproval'"),
    )


def _parse_scope(data: object, where: str) -> tuple[dict, selection.Selector | None]:
    _check_mapping(data, f"{where}: key 'scope'", SCOPE_KEYS)
    scope = {}
    for key in NAME_SCOPES + ("runtime",):
        if key in data:
            scope[key] = tuple(_names(data[key], f"{where}: key 'scope.{key}'", allow_one=True))
            if not scope[key]:
                raise PolicyError(f"{where}: key 'scope.{key}': empty list would match nothing; "
                                  "list values or leave the key out to match all")
    bad = [r for r in scope.get("runtime", ()) if r not in RUNTIMES]
    if bad:
        raise PolicyError(f"{where}: key 'scope.runtime': {bad}; accepted: {', '.join(RUNTIMES)}")
    selector = None
    if "podSelector" in data:
        selector = _parse_selector(data["podSelector"], f"{where}: key 'scope.podSelector'")
    return scope, selector


def _parse_selector(value: object, where: str) -> selection.Selector:
    if isinstance(value, dict):
        value = ",".join(f"{k}={v}" for k, v in value.items())
    if not isinstance(value, str):
        raise PolicyError(f"{where}: expected 'k=v,k2!=v2' or a mapping of labels")
    try:
        return selection.parse_selector(value)
    except selection.SelectorError as exc:
        raise PolicyError(f"{where}: {exc}") from exc


def _check_mapping(data: object, where: str, keys: Sequence[str]) -> None:
    if not isinstance(data, dict):
        raise PolicyError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in keys)
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r}; accepted: {', '.join(keys)}")


def _mapping(value: object, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: expected a mapping of group name to identities")
    return value


def _names(value: object, where: str, *, allow_one: bool = False) -> list[str]:
    if allow_one and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where}: expected a list of non-empty strings, got {value!r}")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(f"{where}: expected true or false, got {value!r}")
    return value
