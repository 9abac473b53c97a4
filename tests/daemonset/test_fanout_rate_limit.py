"""Issue 16, "Rate limits vs fan-out": a 200-pod exec under the README's example policy
behaves as documented -- the identity is charged per OPERATION (one token however many
targets), each target per target (coral_lib/colony/ratelimit.check_fanout; README "Rate
limits"). A real colony with the README's policy, a real `coral agent node` process seeing
200 running pods in the API server fixture. The shortcut: the pods do not run in a
container runtime, so each exec ends in the agent's "not found" error -- the limiter's
decision, which is what is tested, comes before it."""

from __future__ import annotations

import json
import pathlib
import re
import time

import pytest

from coral_lib import client, errors
from tests.daemonset.conftest import pod
from tests.security.conftest import PolicyColony
from tests.support import coral_procs, kube_identity
from tests.support.coral_procs import wait_for

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
PODS = 200


def readme_policy() -> str:
    """The example policy of the README's Security section, as written there."""
    text = README.read_text()
    section = text[text.index("## Security: policy, approvals, rate limits, audit"):]
    return re.search(r"```yaml\n(.*?)```", section, re.S)[1]


@pytest.fixture
def colony(tmp_path, kubeapi):
    assert 'perIdentity: "30/m, burst=10"' in readme_policy()
    # plus one rule so the test's admin token may watch the registry (alice is limited)
    (tmp_path / "policy.yaml").write_text(readme_policy().replace(
        "rules:\n", "rules:\n  - {name: test-admin, identities: [admin], verbs: [read]}\n", 1))
    kubeconfig = kube_identity.colony_kubeconfig(kubeapi, tmp_path / "colony-kubeconfig")
    colony = PolicyColony(tmp_path / "colony", args=(
        "--policy", str(tmp_path / "policy.yaml"), "--token-review-kubeconfig", kubeconfig))
    colony.add_token("alice")  # group sre: exec on env=staging
    colony.start()
    yield colony
    colony.stop()


def _exec(colony, *targeting: str) -> tuple[list[dict], str]:
    run = coral_procs.coral("exec", "-o", "json", "--max-concurrency", "50", *targeting, "--",
                            "true", env=colony.env_for("alice"), timeout=300)
    return (json.loads(run.stdout)["results"] if run.stdout.strip() else []), run.stderr


def test_200_pod_exec_is_one_operation_for_the_identity_and_each_pod_is_charged_once(
        kubeapi, colony, node_agents):
    for index in range(PODS):
        kubeapi.store.create(pod(f"job-{index:03d}", labels={"env": "staging"},
                                 containers=[{"name": "app", "image": "docker.io/local/b"}],
                                 phase="Running"))
    node_agents("node-a", flags=["--cri-socket", ""])
    wait_for(lambda: _targetable(colony) == PODS, timeout=60, what=f"{PODS} pods targetable")
    started = time.monotonic()  # alice's bucket is full (10) here; it refills 0.5/s
    results, err = _exec(colony, "--namespace", "shop")
    assert len(results) == PODS, err
    assert not [r for r in results if "rate limit" in r["error"]], results[:3]
    # the identity's burst is 10 operations: single-pod ones in quick succession (through
    # the client) until one is refused; what refilled meanwhile is counted from the clock,
    # so a slow (loaded) machine does not change what is proven
    ran, refusal = 1, None
    with colony.client_for("alice") as c:
        for index in range(1, 60):
            try:
                c.exec(client.Targeting(pod=f"job-{index:03d}", namespace="shop"),
                       argv=["true"])
            except errors.RateLimited as exc:
                refusal = str(exc)
                break
            ran += 1
    refilled = int(0.5 * (time.monotonic() - started))
    assert refusal and "rate limit for identity 'alice' exceeded" in refusal, refusal
    assert 10 <= ran <= 10 + refilled, (ran, refilled)  # burst 10, the 200-pod one too
    with colony.client() as c:  # ONE refused record for the refused operation
        records = [r for r in c.audit(kind="refused") if r["rule"] == "rate-limit"]
    assert len(records) == 1 and "none run" in records[0]["reason"], records


def _targetable(colony) -> int:
    with colony.client() as c:
        try:
            return len(c.resolve(client.Targeting(namespace="shop")))
        except errors.NoTargets:
            return 0
