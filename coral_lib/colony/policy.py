"""The colony's gate in front of every remote operation: RBAC, approval, rate limit, audit.

Order for one operation (all its targets at once): authenticate (auth.operator) -> RBAC
per target (denied targets get a `refused` record with the rule) -> approval when any
allowed target's rule says requireApproval (one approval covers the whole operation:
requester, verb, target list and command) -> a token per target from the per-identity and
per-target buckets (over-limit targets get a `refused` record, rule "rate-limit").

Settings come from the policy file (`coral colony start --policy FILE`, config
`policyFile`), which is the RBAC file of colony/rbac.py plus three colony keys:

    rateLimits: {perIdentity: "30/m, burst=10", perTarget: "10/m, burst=5"}
    approvalTTL: 15m            # approvals expire after this, pending or not yet used
    approvalLimits: {perIdentity: "10/m, burst=10", pendingPerIdentity: 10}   # defaults
    tapHeadersOnly: false       # every tap records headers only

Without a policy file the embedded default allows the identity `admin` and the group
`admins` everything (the data directory's admin token is both), and nobody else anything.
With a policy file, whatever no rule allows is denied (reads too: `read` is colony-wide,
so only rules without a scope grant it).

Identities: a bearer token from tokens.json in the data directory (add one with
`coral colony token add --identity alice --group sre`, which prints the token; restart
the colony to load it), or a client certificate signed by the colony CA on the
`--mtls-listen` port (identity = the certificate's CN, group `cert`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import secrets as pysecrets
import threading
from collections.abc import Iterator, Mapping, Sequence

from coral_lib import durations, errors, validate, yamlfile
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.colony.v1 import colony_pb2
from coral_lib.colony import approvals as approvals_mod
from coral_lib.colony import audit as audit_mod
from coral_lib.colony import auth, ratelimit, rbac, registry

COLONY_KEYS = ("rateLimits", "approvalTTL", "tapHeadersOnly", "approvalLimits")
RATE_KEYS = ("perIdentity", "perTarget")
APPROVAL_KEYS = ("perIdentity", "pendingPerIdentity")
DEFAULT_TTL = 900.0
DEFAULT_APPROVAL_RATE = ratelimit.Rate(per_second=10 / 60, burst=10)
DEFAULT_PENDING = 10
# Shells wait for their approval on the colony (a shell cannot be redeemed by id later);
# every other verb answers with the pending id at once and the client waits.
MAX_WAITING_SHELLS = 16
RATE_LIMIT_RULE = "rate-limit"
OBSERVE_LABEL = "coral.io/observe-only"


@dataclasses.dataclass(frozen=True)
class Settings:
    policy: rbac.Policy
    per_identity: ratelimit.Rate | None = None
    per_target: ratelimit.Rate | None = None
    approval_ttl: float = DEFAULT_TTL
    tap_headers_only: bool = False
    source: str = "embedded default"
    approval_rate: ratelimit.Rate | None = DEFAULT_APPROVAL_RATE
    approval_pending: int = DEFAULT_PENDING


def embedded_default(*, observe_only: bool = False) -> rbac.Policy:
    rule = rbac.Rule(name="embedded-default", identities=frozenset({"admin"}),
                     groups=frozenset({"admins"}), verbs=frozenset(rbac.VERBS))
    return rbac.Policy(rules=(rule,), observe_only=observe_only)


def load_settings(path: str | None, *, observe_only: bool = False,
                  observe_only_agents: Sequence[str] = (),
                  rate_limits: Mapping[str, str] | None = None,
                  approval_ttl: float | None = None) -> Settings:
    """Settings from the policy file (None: embedded default) and the colony config.
    Raises rbac.PolicyError naming the file, rule and key."""
    data: dict = {}
    if path:
        try:
            data = yamlfile.load(path, source=f"policy file {path}") or {}
        except yamlfile.YamlFileError as exc:
            raise rbac.PolicyError(str(exc)) from None
        if not isinstance(data, dict):
            raise rbac.PolicyError(f"{path}: top level: expected a mapping")
    source = os.fspath(path) if path else "embedded default"
    colony = {k: data.pop(k) for k in COLONY_KEYS if k in data}
    policy = rbac.parse_policy(data, source=source) if path else embedded_default()
    policy = dataclasses.replace(
        policy, observe_only=policy.observe_only or observe_only,
        observe_only_agents=policy.observe_only_agents | frozenset(observe_only_agents))
    limits = {**(rate_limits or {}), **_mapping(colony.get("rateLimits"), source)}
    ttl = colony.get("approvalTTL", approval_ttl if approval_ttl is not None else DEFAULT_TTL)
    headers_only = colony.get("tapHeadersOnly", False)
    if not isinstance(headers_only, bool):
        raise rbac.PolicyError(f"{source}: key 'tapHeadersOnly': expected true or false")
    approvals = _approval_limits(colony.get("approvalLimits"), source)
    return Settings(policy=policy, per_identity=_rate(limits, "perIdentity", source),
                    per_target=_rate(limits, "perTarget", source),
                    approval_ttl=_ttl(ttl, source), tap_headers_only=headers_only,
                    source=source, **approvals)


def _approval_limits(value: object, source: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - set(APPROVAL_KEYS):
        raise rbac.PolicyError(f"{source}: key 'approvalLimits': expected a mapping with "
                               f"{' and/or '.join(APPROVAL_KEYS)}")
    out: dict = {}
    if "perIdentity" in value:
        out["approval_rate"] = _rate(value, "perIdentity", source)
    if "pendingPerIdentity" in value:
        pending = value["pendingPerIdentity"]
        if not isinstance(pending, int) or isinstance(pending, bool) or pending < 1:
            raise rbac.PolicyError(f"{source}: key 'approvalLimits.pendingPerIdentity': "
                                   "expected a whole number >= 1")
        out["approval_pending"] = pending
    return out


def _mapping(value: object, source: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise rbac.PolicyError(f"{source}: key 'rateLimits': expected a mapping with "
                               f"{' and/or '.join(RATE_KEYS)}")
    unknown = sorted(str(k) for k in value if k not in RATE_KEYS)
    if unknown:
        raise rbac.PolicyError(f"{source}: key 'rateLimits.{unknown[0]}': unknown; accepted: "
                               f"{', '.join(RATE_KEYS)}")
    return value


def _rate(limits: Mapping[str, object], key: str, source: str) -> ratelimit.Rate | None:
    if not limits.get(key):
        return None
    try:
        return ratelimit.parse_rate(str(limits[key]))
    except ValueError as exc:
        raise rbac.PolicyError(f"{source}: key 'rateLimits.{key}': {exc}") from exc


def _ttl(value: object, source: str) -> float:
    try:
        seconds = durations.parse_duration(value)
    except ValueError as exc:
        raise rbac.PolicyError(f"{source}: key 'approvalTTL': {exc}") from exc
    if seconds <= 0:
        raise rbac.PolicyError(f"{source}: key 'approvalTTL': must be longer than 0s")
    return seconds


# -- tokens --------------------------------------------------------------------------------

def add_token(path: str | os.PathLike, *, identity: str, groups: Sequence[str] = (),
              token: str = "") -> str:
    """Add (or replace) the token of `identity` in tokens.json, atomically; return the token."""
    if not identity or any(c.isspace() for c in identity):
        raise ValueError(f"identity {identity!r}: expected a non-empty name without spaces")
    path = pathlib.Path(path)
    body = json.loads(path.read_text()) if path.exists() else {"tokens": []}
    token = token or pysecrets.token_urlsafe(32)
    entries = [e for e in body.get("tokens", []) if e.get("identity") != identity]
    entries.append({"token": token, "identity": identity, "groups": list(groups)})
    auth.save_tokens(path, entries)  # stores SHA-256 only
    return token


# -- the gate -----------------------------------------------------------------------------

class Refused(errors.CoralError):
    """The whole operation is refused; `code` is the gRPC status name to answer with."""

    def __init__(self, message: str, *, code: str = "PERMISSION_DENIED",
                 retry_after: float = 0.0) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


@dataclasses.dataclass
class Admission:
    """What may run: allowed targets with the rule that allowed each; refused ones with the
    audit id of their `refused` record and the reason."""

    allowed: list[tuple[colony_pb2.Target, str]]
    refused: list[tuple[colony_pb2.Target, int, str]]
    approval_id: str = ""
    verb: str = ""  # the verb admitted, from the RPC (colony/verbs.py), for the audit


class Gate:
    def __init__(self, settings: Settings, *, audit: audit_mod.AuditLog,
                 approvals: approvals_mod.ApprovalStore, registry: registry.Registry) -> None:
        self.settings, self.audit, self.approvals, self.registry = (
            settings, audit, approvals, registry)
        self.limiter = ratelimit.RateLimiter(per_identity=settings.per_identity,
                                             per_target=settings.per_target)
        self.approval_limiter = ratelimit.RateLimiter(per_identity=settings.approval_rate,
                                                      per_target=None)
        self._waiting = threading.BoundedSemaphore(MAX_WAITING_SHELLS)

    def rbac_target(self, target: colony_pb2.Target) -> rbac.Target:
        """The policy's view of a target: labels of its node, agent and service (or pod), its
        node and runtime."""
        agent = self.registry.get_agent(target.agent_id)
        labels = {**agent.node_labels, **agent.labels} if agent else {}
        if target.service:
            flt = registry.ServiceFilter(name=target.service, agent=target.agent_id)
            for _, svc in self.registry.services(flt):
                if not target.pod or svc.pod_name == target.pod:
                    labels.update(svc.labels)
                    break
        elif target.pod:  # a pod a DaemonSet agent sees, without a service
            pod = self.registry.pod(target.agent_id, target.namespace, target.pod)
            labels.update(pod.labels if pod else {})
        mode = agent.runtime.mode if agent else 0
        return rbac.Target(agent_id=target.agent_id, service=target.service,
                           namespace=target.namespace, pod=target.pod, labels=labels,
                           node=target.node or (agent.node_name if agent else ""),
                           runtime=_RUNTIMES.get(mode, ""))

    def grants(self, identity: auth.Identity, verb: str) -> bool:
        """Whether a colony-wide rule grants `verb` (no audit record: a question, not an
        operation)."""
        return rbac.decide(self.settings.policy, identity=identity.name, groups=identity.groups,
                           verb=verb, target=rbac.Target()).allowed

    def check_read(self, identity: auth.Identity, what: str, *, verb: str = "read") -> None:
        """Colony-wide verbs (read; admin for agent administration): only rules without a
        scope grant them. `verb` is the RPC's verb from colony/verbs.py."""
        decision = rbac.decide(self.settings.policy, identity=identity.name,
                               groups=identity.groups, verb=verb, target=rbac.Target())
        if not decision.allowed:
            self.audit.refused(requester=identity.name, verb=verb, target=what, command="",
                               reason=decision.reason, rule=decision.rule)
            raise Refused(f"{verb} refused: {decision.reason}")

    def admit(self, *, identity: auth.Identity, verb: str, targets: list[colony_pb2.Target],
              command: str, approval_id: str = "", no_wait: bool = False,
              is_active=lambda: True) -> Iterator[colony_pb2.PendingApproval]:
        """Generator: yields a PendingApproval while one is awaited, returns an Admission
        (None when the caller asked not to wait for a pending approval).
        Raises Refused when nothing may run."""
        allowed, refused, gated = [], [], False
        for target in targets:
            decision = rbac.decide(self.settings.policy, identity=identity.name,
                                   groups=identity.groups, verb=verb,
                                   target=self.rbac_target(target))
            if decision.allowed:
                allowed.append((target, decision.rule))
                gated = gated or decision.require_approval
            else:
                refused.append((target, self._refuse(identity, verb, target, command,
                                                     decision.reason, decision.rule),
                                decision.reason))
        if not allowed:
            raise Refused(f"{verb} refused: {refused[0][2]}")
        if gated:
            approval_id = yield from self._approval(
                identity=identity, verb=verb, targets=[t for t, _ in allowed], command=command,
                approval_id=approval_id, no_wait=no_wait, is_active=is_active)
            if not approval_id:
                return None
        return self._rate_limited(identity, verb, command, allowed, Admission(
            allowed=[], refused=refused, approval_id=approval_id, verb=verb))

    def _rate_limited(self, identity, verb, command, allowed, admission):
        """Charge the operation (ratelimit.check_fanout: one identity token per operation,
        one token per target); over the identity's limit it is refused whole with ONE
        audit record, a target over its own limit is refused alone."""
        mine, verdicts = self.limiter.check_fanout(identity.name,
                                                   [describe(t) for t, _ in allowed])
        if not mine.allowed:
            first = allowed[0][0]
            self._refuse(identity, verb, first, command, f"{mine.reason} ({len(allowed)} "
                         "targets, none run)", RATE_LIMIT_RULE)
            raise Refused(f"{verb} refused: {mine.reason}", code="RESOURCE_EXHAUSTED",
                          retry_after=mine.retry_after)
        waits = []
        for (target, rule), verdict in zip(allowed, verdicts, strict=True):
            if verdict.allowed:
                admission.allowed.append((target, rule))
                continue
            waits.append(verdict.retry_after)
            audit_id = self._refuse(identity, verb, target, command, verdict.reason,
                                    RATE_LIMIT_RULE)
            admission.refused.append((target, audit_id, verdict.reason))
        if not admission.allowed:
            raise Refused(f"{verb} refused: {admission.refused[-1][2]}",
                          code="RESOURCE_EXHAUSTED", retry_after=max(waits))
        return admission

    def _refuse(self, identity, verb, target, command, reason, rule) -> int:
        # Clipped: a refused caller must not be able to write megabytes per attempt.
        return self.audit.refused(requester=identity.name, verb=verb, target=describe(target),
                                  command=validate.clip(command), reason=validate.clip(reason),
                                  rule=rule)

    def _approval(self, *, identity, verb, targets, command, approval_id, no_wait, is_active):
        scope = approval_scope(targets)
        if not approval_id:
            verdict = self.approval_limiter.check(identity.name, "")
            if not verdict.allowed:
                raise Refused(f"{verb} not asked for approval: {verdict.reason} (approval "
                              "requests)", code="RESOURCE_EXHAUSTED",
                              retry_after=verdict.retry_after)
            if not no_wait and not self._waiting.acquire(blocking=False):
                raise Refused(f"{verb} not asked for approval: {MAX_WAITING_SHELLS} requests "
                              "already wait on the colony; retry later",
                              code="RESOURCE_EXHAUSTED", retry_after=5.0)
            try:
                approval_id = yield from self._ask(identity, verb, targets, scope, command,
                                                   no_wait=no_wait, is_active=is_active)
            finally:
                if not no_wait:
                    self._waiting.release()
            if not approval_id:
                return ""
        try:
            self.approvals.redeem(approval_id, requester=identity.name, verb=verb,
                                  target=scope, command=command)
        except approvals_mod.ApprovalError as exc:
            for target in targets:
                self._refuse(identity, verb, target, command, str(exc), "approval")
            raise Refused(f"{verb} refused: {exc}") from None
        return approval_id

    def _ask(self, identity, verb, targets, scope, command, *, no_wait, is_active):
        """Record a request (its scope stored with it), yield it as pending; with no_wait
        return '' at once, else wait here for the decision and return the id."""
        approval_id = self.approvals.request(
            requester=identity.name, verb=verb, target=scope, command=command,
            ttl=self.settings.approval_ttl, max_pending=self.settings.approval_pending,
            scope=json.dumps([dataclasses.asdict(self.rbac_target(t)) for t in targets]))
        record = self.approvals.get(approval_id)
        self.audit.append("approval", {"event": "requested", "approval_id": approval_id,
                                       "requester": identity.name, "verb": verb,
                                       "target": scope, "command": command})
        yield colony_pb2.PendingApproval(
            approval_id=approval_id, expires_at=record.expires_at,
            reason=f"{verb} on {scope} needs approval by another identity")
        if no_wait:
            return ""
        while is_active():
            record = self.approvals.wait(approval_id, 1.0)
            if record.state != "pending":
                break
        if record.state != "approved":
            raise Refused(f"approval {approval_id} is {record.state}; {verb} not run")
        return approval_id

    def decide_approval(self, identity: auth.Identity, approval_id: str, *,
                        approve: bool, verb: str = "approve") -> approvals_mod.Approval:
        """Approve or deny; the approver needs `verb` (the RPC's, colony/verbs.py: approve)
        on every target it covers: the scope stored with the request, so it survives a
        colony restart."""
        stored = self.approvals.get(approval_id)
        for target in _scope_targets(stored.scope) or [rbac.Target()]:
            decision = rbac.decide(self.settings.policy, identity=identity.name,
                                   groups=identity.groups, verb=verb, target=target)
            if not decision.allowed:
                self.audit.refused(requester=identity.name, verb=verb, target=approval_id,
                                   command="", reason=decision.reason, rule=decision.rule)
                raise Refused(f"{verb} refused: {decision.reason}")
        action = self.approvals.approve if approve else self.approvals.deny
        record = action(approval_id, approver=identity.name)
        self.audit.append("approval", {"event": record.state, "approval_id": approval_id,
                                       "requester": record.requester, "decided_by": identity.name,
                                       "verb": record.verb, "target": record.target,
                                       "command": record.command})
        return record

    def headers_only(self, target: colony_pb2.Target) -> bool:
        """Taps of observe-only pods (label coral.io/observe-only=true) keep headers only."""
        labels = self.rbac_target(target).labels
        return self.settings.tap_headers_only or labels.get(OBSERVE_LABEL) == "true"


_RUNTIMES = {agent_pb2.RUNTIME_MODE_NATIVE: "host", agent_pb2.RUNTIME_MODE_CONTAINER: "host",
             agent_pb2.RUNTIME_MODE_K8S_DAEMONSET: "daemonset",
             agent_pb2.RUNTIME_MODE_K8S_SIDECAR: "sidecar"}


def _scope_targets(scope: str) -> list[rbac.Target]:
    """The rbac targets stored with an approval request ([] for requests stored before
    scopes were kept: those are checked colony-wide)."""
    try:
        return [rbac.Target(**item) for item in json.loads(scope or "[]")]
    except (ValueError, TypeError):
        return []


def describe(target: colony_pb2.Target) -> str:
    where = "/".join(p for p in (target.namespace, target.pod, target.container) if p)
    return f"{target.agent_id}:{where}" if where else target.agent_id


def approval_scope(targets: Sequence[colony_pb2.Target]) -> str:
    return ", ".join(sorted(describe(t) for t in targets))


def approval_record(record: approvals_mod.Approval) -> colony_pb2.ApprovalRecord:
    return colony_pb2.ApprovalRecord(
        approval_id=record.id, requester=record.requester, verb=record.verb,
        target=record.target, command=record.command, state=record.state,
        decided_by=record.decided_by, expires_at=record.expires_at,
        created_at=record.created_at)
