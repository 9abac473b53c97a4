"""Issue 6 acceptance (policy on the colony), end to end with real colony/agent processes:
RBAC denials through the CLI and the Python client with token and certificate identities,
the approval flow with two identities (self-approval refused, expiry), observe-only,
rate-limit bursts, and policy validation at start."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from coral_lib import client
from coral_lib.colony import pki
from tests.security import conftest
from tests.support import coral_procs


def _coral(colony, identity, *args):
    return coral_procs.coral(*args, env=colony.env_for(identity))


def _records(colony, **filters) -> list[dict]:
    with colony.client() as c:
        return c.audit(**filters)


def test_rbac_allows_in_scope_and_audits_the_rule(secured):
    run = _coral(secured, "alice", "exec", "--service", "api", "--", "echo", "staging ok")
    assert run.returncode == 0, run.stderr
    assert "staging ok" in run.stdout
    started = [r for r in _records(secured, kind="started", requester="alice")
               if r["command"] == "echo 'staging ok'"]
    assert started and started[-1]["decision_rule"] == "sre-staging"


@pytest.mark.parametrize(("identity", "rule", "words"), [
    ("carol", "no-carol", "rule 'no-carol' denies carol exec"),
    ("dave", "no rule", "no rule allows dave to exec"),
])
def test_rbac_denial_through_cli_is_refused_and_audited(secured, identity, rule, words):
    run = _coral(secured, identity, "exec", "--service", "api", "--", "echo", f"by {identity}")
    assert run.returncode == 1
    assert words in run.stderr
    refused = [r for r in _records(secured, kind="refused", requester=identity)
               if r["command"] == f"echo 'by {identity}'"]
    assert refused and refused[-1]["rule"] == rule
    assert not [r for r in _records(secured, kind="started", requester=identity)]


def test_rbac_denial_through_python_client_and_read_verb(secured):
    with secured.client_for("dave") as dave:
        with pytest.raises(client.PermissionDenied, match="no rule allows dave to read"):
            dave.list_agents()
        with pytest.raises(client.PermissionDenied, match="no rule allows dave to exec"):
            dave.exec(client.Targeting(service="api"), argv=["true"])
    with secured.client_for("alice") as alice:
        assert {a["agent_id"] for a in alice.list_agents()} == {"stage-1", "prod-1"}
        with pytest.raises(client.PermissionDenied, match="no rule allows alice to shell"):
            list(alice.shell(client.Targeting(service="pay"), inputs=iter(())))


def test_rbac_identity_from_client_certificate(secured):
    cert, key = pki.issue_client_cert(pki.ColonyFiles(secured.data_dir), identity="erin")
    with client.connect(secured.mtls_address, ca_file=str(secured.data_dir / "ca.crt"),
                        client_cert=(cert, key)) as erin:
        assert erin.whoami() == "erin"
        with pytest.raises(client.PermissionDenied, match="no rule allows erin to exec"):
            erin.exec(client.Targeting(service="api"), argv=["true"])
    assert any(r["requester"] == "erin" and r["rule"] == "no rule"
               for r in _records(secured, kind="refused"))


def test_approval_no_wait_then_other_identity_approves_and_requester_redeems(secured):
    held = _coral(secured, "alice", "exec", "--service", "pay", "--no-wait", "--",
                  "echo", "prod once")
    assert held.returncode == 3, held.stderr
    approval_id = held.stdout.strip()
    assert f"waiting for approval {approval_id} (coral approve {approval_id})" in held.stderr
    with secured.client_for("bob") as bob:
        assert approval_id in [a["approval_id"] for a in bob.approvals()]
    with secured.client_for("alice") as alice, pytest.raises(
            client.PermissionDenied, match="cannot approve their own request"):
        alice.approve(approval_id)
    ok = _coral(secured, "bob", "approve", approval_id)
    assert ok.returncode == 0 and "approved by bob" in ok.stdout, ok.stderr
    run = _coral(secured, "alice", "exec", "--service", "pay", "--approval-id", approval_id,
                 "--", "echo", "prod once")
    assert run.returncode == 0 and "prod once" in run.stdout, run.stderr
    again = _coral(secured, "alice", "exec", "--service", "pay", "--approval-id", approval_id,
                   "--", "echo", "prod once")
    assert again.returncode == 1 and "already used" in again.stderr
    started = [r for r in _records(secured, kind="started") if r["approval_id"] == approval_id]
    assert len(started) == 1 and started[0]["decision_rule"] == "sre-production"
    events = [r["event"] for r in _records(secured, kind="approval")
              if r["approval_id"] == approval_id]
    assert events == ["requested", "approved"]


def test_approval_waiting_exec_runs_once_another_identity_approves(secured):
    proc = subprocess.Popen(
        [*coral_procs.CORAL, "exec", "--service", "pay", "--", "echo", "waited"],
        env={**__import__("os").environ, **secured.env_for("alice")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert line.startswith("waiting for approval "), line
    approval_id = line.split()[3]
    denied_self = _coral(secured, "alice", "approve", approval_id)
    assert denied_self.returncode == 1 and "cannot approve their own" in denied_self.stderr
    assert _coral(secured, "bob", "approve", approval_id).returncode == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "waited" in out, err


def test_approval_expires_and_cannot_be_approved_or_redeemed(secured):
    listed = _coral(secured, "bob", "approvals", "-o", "json")
    assert listed.returncode == 0 and isinstance(json.loads(listed.stdout), list)
    held = _coral(secured, "alice", "exec", "--service", "pay", "--no-wait", "--", "true")
    approval_id = held.stdout.strip()
    time.sleep(8.5)  # approvalTTL is 8s
    late = _coral(secured, "bob", "approve", approval_id)
    assert late.returncode == 1 and "expired" in late.stderr
    run = _coral(secured, "alice", "exec", "--service", "pay", "--approval-id", approval_id,
                 "--", "true")
    assert run.returncode == 1 and "is expired, not approved" in run.stderr


def test_deny_refuses_the_waiting_request(secured):
    with secured.client_for("alice") as alice:
        with pytest.raises(client.ApprovalPending) as info:
            alice.exec(client.Targeting(service="pay"), argv=["true"], wait_for_approval=False)
    with secured.client_for("bob") as bob:
        assert bob.deny(info.value.approval_id)["state"] == "denied"
    with secured.client_for("alice") as alice, pytest.raises(client.PermissionDenied,
                                                             match="denied"):
        alice.exec(client.Targeting(service="pay"), argv=["true"],
                   approval_id=info.value.approval_id)


def test_rate_limit_burst_exactly_the_allowed_number_pass(tmp_path):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        'rateLimits: {perIdentity: "1/m, burst=3"}\n'
        "rules: [{name: all, identities: ['*'], verbs: ['*']}]\n")
    colony = conftest.PolicyColony(tmp_path / "colony", args=("--policy", str(policy_file)))
    colony.start()
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="solo-1").start()
    try:
        coral_procs.wait_registered(colony, ["solo-1"])
        passed, limited = 0, []
        with colony.client() as c:
            for _ in range(6):
                try:
                    c.exec(client.Targeting(agent="solo-1"), argv=["true"])
                    passed += 1
                except client.RateLimited as exc:
                    limited.append(exc)
        assert passed == 3 and len(limited) == 3
        assert all(20 < e.retry_after <= 60 and "retry in" in str(e) for e in limited)
        cli = coral_procs.coral("exec", "--agent", "solo-1", "--", "true", env=colony.operator_env)
        assert cli.returncode == 1 and "rate limit for identity 'admin' exceeded" in cli.stderr
        with colony.client() as c:
            refused = [r for r in c.audit(kind="refused") if r["rule"] == "rate-limit"]
            assert len(refused) == 4
            assert c.verify_audit()["ok"]
    finally:
        agent.stop()
        colony.stop()


def test_observe_only_refuses_exec_and_allows_reads(tmp_path):
    colony = conftest.PolicyColony(tmp_path / "colony", args=("--observe-only",)).start()
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="obs-1").start()
    try:
        coral_procs.wait_registered(colony, ["obs-1"])
        run = coral_procs.coral("exec", "--agent", "obs-1", "--", "true", env=colony.operator_env)
        assert run.returncode == 1 and "observe-only" in run.stderr
        agents = coral_procs.coral("agents", "-o", "json", env=colony.operator_env)
        assert [a["agent_id"] for a in json.loads(agents.stdout)] == ["obs-1"]
        with colony.client() as c:
            assert [r["rule"] for r in c.audit(kind="refused")] == ["observe-only"]
    finally:
        agent.stop()
        colony.stop()


def test_invalid_policy_stops_the_colony_at_start_naming_the_rule(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: broken\n    identities: [x]\n    verbs: [exec, fly]\n")
    run = coral_procs.coral("colony", "start", "--data-dir", str(tmp_path / "c"), "--listen",
                            f"127.0.0.1:{coral_procs.free_port()}", "--policy", str(bad))
    assert run.returncode == 2
    assert "rules[0] (broken): key 'verbs'" in run.stderr
    check = coral_procs.coral("policy", "check", str(bad))
    assert check.returncode == 2 and "broken" in check.stderr


def test_policy_file_and_rate_limits_from_colony_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: r1\n    identities: [x]\n    verbs: [read]\n"
                   "    scope: {flavour: [x]}\n")
    cfg = tmp_path / "colony.yaml"
    cfg.write_text(f"policyFile: {bad}\nrateLimits: {{perIdentity: '5/m'}}\n")
    run = coral_procs.coral("colony", "start", "--data-dir", str(tmp_path / "c"), "--listen",
                            f"127.0.0.1:{coral_procs.free_port()}", "--config", str(cfg))
    assert run.returncode == 2
    assert "rules[0] (r1): key 'scope': unknown key 'flavour'" in run.stderr
    cfg.write_text("rateLimits: {perIdentity: 'often'}\n")
    run = coral_procs.coral("colony", "start", "--data-dir", str(tmp_path / "c"), "--listen",
                            f"127.0.0.1:{coral_procs.free_port()}", "--config", str(cfg))
    assert run.returncode == 2 and "rateLimits.perIdentity" in run.stderr
