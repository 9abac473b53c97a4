"""Issue 15, fan-out goal ("`coral_exec` within 1.25x of the floor at N=200 and at N=1,000
over 3 nodes"): two changes to how the colony sends one operation's targets, and the audit
and authorization they must leave exactly as they were.

* Targets are sent one agent at a time in turn (operations.dispatch_order). They come
  sorted by agent, so a 64-wide window over 3 nodes' 200 pods used to send all 64 to the
  first node while the others idled.
* The `started` records of the first wave (the targets sent at once: max_concurrency of
  them) are written in ONE transaction, before any is sent; later targets write their own
  as before. Every target that ran still has its own started / entered / finished records,
  chained and verifiable; a target the policy refuses inside a permitted batch is refused,
  audited, and gets no `started` record.

A real colony process (policy file, token identities) and real host agents."""

from __future__ import annotations

import collections
import json
import threading

import pytest

from coral_lib import client, errors
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.colony.v1 import colony_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import audit as audit_mod
from coral_lib.colony import auth, links, operations, policy
from coral_lib.colony import registry as registry_mod
from tests.security.conftest import PolicyColony
from tests.support import coral_procs

POLICY = """
rules:
  - name: admins-all
    groups: [admins]
    verbs: ["*"]
  - name: alice-staging
    identities: [alice]
    verbs: [read, exec]
    scope: {env: [staging]}
"""
AGENTS = {"web-1": "staging", "web-2": "staging", "web-3": "production",
          "web-4": "production"}


def test_dispatch_order_sends_one_target_per_agent_in_turn():
    allowed = [(colony_pb2.Target(agent_id=agent, pod=f"p{i}"), "rule")
               for agent, count in (("a", 3), ("b", 1), ("c", 2)) for i in range(count)]
    order = [(t.agent_id, t.pod) for t, _ in operations.dispatch_order(allowed)]
    assert order == [("a", "p0"), ("b", "p0"), ("c", "p0"), ("a", "p1"), ("c", "p1"),
                     ("a", "p2")]
    assert operations.dispatch_order([]) == []


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Colony with POLICY; four host agents, each with one tier=web service: web-1 and
    web-2 env=staging, web-3 and web-4 env=production."""
    tmp = tmp_path_factory.mktemp("fanout-dispatch")
    (tmp / "policy.yaml").write_text(POLICY)
    colony = PolicyColony(tmp / "colony", args=("--policy", str(tmp / "policy.yaml")))
    colony.add_token("alice")
    colony.start()
    agents = []
    try:
        for agent_id, env in AGENTS.items():
            agents.append(coral_procs.Agent(tmp / "agents", colony, agent_id=agent_id, services=[
                {"name": "api", "port": coral_procs.free_port(),
                 "labels": {"tier": "web", "env": env}}]).start())
        coral_procs.wait_registered(colony, list(AGENTS))
        with colony.client() as admin:
            coral_procs.wait_for(lambda: len(admin.list_services(labels={"tier": "web"})) == 4,
                                 what="4 tier=web services")
        yield colony
    finally:
        for agent in agents:
            agent.stop()
        colony.stop()


def _records(admin, op_ids) -> dict[str, list[dict]]:
    by_op: dict[str, list[dict]] = collections.defaultdict(list)
    for record in admin.audit_records():
        if record.get("op_id", "").split("/")[0] in op_ids:
            by_op[record["op_id"]].append(record)
    return by_op


def test_first_wave_is_written_together_and_every_target_keeps_its_audit_trail(fleet):
    with fleet.client() as admin:
        outcome = admin.exec(client.Targeting(selector={"tier": "web"}), argv=["true"],
                             max_concurrency=2)
        assert sorted(r["status"] for r in outcome.results) == ["ok"] * 4
        records = _records(admin, {outcome.operation_id})
        started = sorted((r for rs in records.values() for r in rs if r["kind"] == "started"),
                         key=lambda r: r["id"])
        # the two sent at once (max_concurrency=2): their records written together, before
        # either target's entered / finished
        assert [r["agent_id"] for r in started[:2]] == ["web-1", "web-2"]
        assert started[1]["id"] == started[0]["id"] + 1
        assert len(records) == 4
        for op_id, trail in records.items():
            assert [r["kind"] for r in trail] == ["started", "entered", "finished"], op_id
            assert trail[-1]["status"] == "ok"
        assert admin.verify_audit()["ok"]


def test_target_refused_inside_a_permitted_batch_is_refused_audited_and_never_started(fleet):
    """Attacker: alice may exec on env=staging only; she aims one fan-out at every web
    service. web-3's and web-4's (production) are refused and audited; only web-1 and
    web-2 run, each with its started record; no started record names web-3 or web-4."""
    with fleet.client_for("alice") as alice:
        outcome = alice.exec(client.Targeting(selector={"tier": "web"}), argv=["true"])
    assert {r["agent"]: r["status"] for r in outcome.results} == {
        "web-1": "ok", "web-2": "ok", "web-3": "refused", "web-4": "refused"}
    with fleet.client() as admin:
        records = _records(admin, {outcome.operation_id})
        assert {trail[0]["agent_id"] for trail in records.values()} == {"web-1", "web-2"}
        assert all(trail[0]["kind"] == "started" for trail in records.values())
        refused = {r["target"] for r in admin.audit(kind="refused", requester="alice")}
        assert {"web-3", "web-4"} <= refused
        assert admin.verify_audit()["ok"]
    with fleet.client_for("alice") as alice, pytest.raises(errors.CoralError):
        alice.exec(client.Targeting(agent="web-3"), argv=["true"])  # nothing permitted


class CountingAudit(audit_mod.AuditLog):
    """The real audit log; it also keeps the kinds of the records each transaction held
    (the only thing added: what is being tested is how many transactions a fan-out opens)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.transactions: list[list[tuple[str, str]]] = []

    def _insert_many(self, records):
        self.transactions.append([(kind, json.loads(f)["op_id"]) for kind, f in records])
        return super()._insert_many(records)


def _answer(link: links.AgentLink, sent: list[str] | None = None) -> None:
    """The agent's end of its link, in this process (the shortcut: no gRPC, no agent
    process): every exec ends ok at once; `sent` collects the op ids of the execs."""
    for msg in link.outgoing():
        if msg.WhichOneof("body") == "exec":
            if sent is not None:
                sent.append(msg.op_id)
            link.deliver(mesh_pb2.AgentMessage(op_id=msg.op_id, exec_result=agent_pb2.ExecResult(
                exit_code=0, stdout=b"ok\n")))


def _fanout(tmp_path, *, max_concurrency: int, is_active=lambda: True, sent=None):
    """Run one in-process fan-out over six targets on agents a-1 and a-2: (its result
    events, the audit log's transactions, whether the chain verifies)."""
    audit = CountingAudit(tmp_path / "audit.db")
    registry = registry_mod.Registry(tmp_path / "registry.db")
    agent_links = links.Links()
    for agent_id in ("a-1", "a-2"):
        threading.Thread(target=_answer, args=(agent_links.attach(agent_id), sent),
                         daemon=True).start()
    targets = [colony_pb2.Target(agent_id=a, pod=f"p{i}") for a in ("a-1", "a-2")
               for i in range(3)]
    fanout = operations.FanOut(registry=registry, audit=audit, links=agent_links)
    try:
        events = list(fanout.run(
            identity=auth.Identity(name="admin", groups=("admins",)),
            request=colony_pb2.OperateRequest(
                max_concurrency=max_concurrency,
                exec=agent_pb2.ExecRequest(argv=["true"], timeout_seconds=5)),
            targets=targets, admission=policy.Admission(
                allowed=[(t, "rule") for t in targets], refused=[], verb="exec"),
            is_active=is_active))
        results = [e.result for e in events if e.WhichOneof("event") == "result"]
        return results, audit.transactions, audit.verify().ok
    finally:
        agent_links.close_all()
        audit.close()
        registry.close()


def test_first_wave_started_records_are_one_transaction(tmp_path):
    """Six targets on two agents, max_concurrency=4: the four sent at once (two of each
    agent, in turn) have their started records in ONE transaction written before any
    other record of the operation; the other two write their own, and every target ends
    with its finished record; the chain verifies."""
    results, transactions, verified = _fanout(tmp_path, max_concurrency=4)
    assert sorted(r.status for r in results) == ["ok"] * 6
    first = transactions[0]
    assert [kind for kind, _ in first] == ["started"] * 4
    assert [op.split("/")[1:3] for _, op in first] == [
        ["a-1", "p0"], ["a-2", "p0"], ["a-1", "p1"], ["a-2", "p1"]]
    started = [op for t in transactions for kind, op in t if kind == "started"]
    finished = [op for t in transactions for kind, op in t if kind == "finished"]
    assert len(started) == 6 and sorted(started) == sorted(finished)
    assert verified


def test_operator_gone_before_the_first_wave_is_sent_closes_its_records_unsent(tmp_path):
    """The operator's call is no longer active once the targets' started records are
    written: nothing is sent to an agent (it used to be sent, then cancelled), each target
    is closed `interrupted`, and the chain verifies."""
    sent: list[str] = []
    results, transactions, verified = _fanout(tmp_path, max_concurrency=4,
                                              is_active=lambda: False, sent=sent)
    assert sent == []
    assert [r.status for r in results] == ["interrupted"] * 6
    started = [op for t in transactions for kind, op in t if kind == "started"]
    finished = [op for t in transactions for kind, op in t if kind == "finished"]
    assert len(started) == 6 and sorted(started) == sorted(finished)
    assert verified
