"""Fixtures for policy tests: a policy file on disk, a fake clock for buckets and expiry."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

POLICY_YAML = """
groups:
  sre: [alice, bob]
  auditors: [dave]
observeOnlyAgents: [agent-frozen]
rules:
  - name: no-shell-in-prod
    effect: deny
    identities: ["*"]
    verbs: [shell]
    scope: {env: production}
  - name: sre-exec-staging
    groups: [sre]
    verbs: [read, exec, shell, tap, trace]
    scope: {env: [staging]}
  - name: sre-exec-prod-approved
    groups: [sre]
    verbs: [exec]
    scope: {env: [production]}
    requireApproval: true
  - name: carol-payments
    identities: [carol]
    verbs: [exec]
    scope: {namespace: ["payments", "pay-*"]}
  - name: carol-checkout-svc
    identities: [carol]
    verbs: [tap]
    scope: {service: [checkout]}
  - name: erin-web-pods
    identities: [erin]
    verbs: [exec]
    scope: {pod: ["web-*"]}
  - name: erin-selector
    identities: [erin]
    verbs: [trace]
    scope: {podSelector: "app=payments-api,tier!=db"}
  - name: frank-node
    identities: [frank]
    verbs: [exec]
    scope: {node: [node-1]}
  - name: frank-host-runtime
    identities: [frank]
    verbs: [shell]
    scope: {runtime: [host]}
  - name: auditors-read
    groups: [auditors]
    verbs: [read]
  - name: anyone-approves
    identities: ["*"]
    verbs: [approve]
"""


@pytest.fixture
def policy_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(POLICY_YAML))
    return path


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
