"""Issue 11, failover: "Agents and operator clients take several colony addresses and fail
over. Kill a replica with SIGKILL during a fan-out: its agents re-link to the others within
10 s, operations it held are closed as `interrupted`, no audit record is lost, and new
operations succeed." Real replicas, agents, PostgreSQL and a real SIGKILL."""

from __future__ import annotations

import collections
import signal
import threading
import time

import psycopg

from coral_lib import client
from tests.replicas.conftest import start_agents
from tests.support import coral_procs

# The functional bound: agents of a killed replica re-link to the others within
# 10 s. By design it takes well under that (README "Failover"): the kernel resets the dead
# process's connections at once, an agent whose link was up (10 s or more) retries after
# at most 0.5 s (jittered), and gRPC's pick_first moves past the refused address to the
# next replica in the same connection attempt; any other retry waits at most 4 s
# (session.FAILOVER_LINK_RETRY_CAP, addresses.FAILOVER_RECONNECT_CAP). This checks that the
# bound holds, polling the links table; bench/bench_colony_replicas.py measures and
# records the typical failover time.
RELINK_WITHIN = 10.0


def _holders(dsn_file) -> dict[str, str]:
    with psycopg.connect(dsn_file.read_text().strip()) as conn:
        return dict(conn.execute("SELECT agent_id, replica FROM colony_links").fetchall())


def _registered(replica, ids: list[str]) -> bool:
    with replica.client() as c:
        agents = {a["agent_id"]: a for a in c.list_agents()}
    return all(agents.get(a, {}).get("service_count") for a in ids)


def _by_op(records: list[dict]) -> dict[str, list[dict]]:
    ops = collections.defaultdict(list)
    for record in records:
        if record["kind"] in ("started", "finished"):
            ops[record["op_id"]].append(record)
    return ops


def test_replica_sigkill_during_fanout_agents_relink_and_ops_interrupted(replica_set, tmp_path):
    replica_set.start(3)
    r0, r1, r2 = replica_set.replicas
    ids = [f"agent-{i}" for i in range(6)]
    # agent i dials replica i % 3 first, then the others (as a shuffled DNS answer would)
    views = [replica_set.view(i, (i + 1) % 3, (i + 2) % 3) for i in range(3)]
    agents = start_agents(tmp_path / "agents", views, ids)
    try:
        coral_procs.wait_for(lambda: len(_holders(replica_set.dsn_file)) == 6 and
                             _registered(r0, ids), timeout=40,
                             what="six agents registered and linked")
        holders = _holders(replica_set.dsn_file)
        on_r1 = sorted(a for a, r in holders.items() if r == "r1")
        assert on_r1 == ["agent-1", "agent-4"], holders

        outcomes: dict[str, object] = {}

        def fan_out(name: str, replica, argv: list[str]) -> None:
            try:
                with replica.client() as c:
                    outcomes[name] = c.exec(client.Targeting(all=True), argv=argv, timeout=60)
            except client.CoralError as exc:
                outcomes[name] = exc
        runs = [threading.Thread(target=fan_out, args=("via-r0", r0, ["sleep", "6"])),
                threading.Thread(target=fan_out, args=("via-r1", r1, ["sleep", "60"]))]
        for run in runs:
            run.start()

        def both_running() -> bool:
            failed = {k: v for k, v in outcomes.items() if isinstance(v, Exception)}
            assert not failed, failed  # a fan-out that could not start says why
            with r0.client() as c:
                started = collections.Counter(r.get("replica") for r in c.audit(kind="started"))
            return started["r0"] == 6 and started["r1"] == 6
        coral_procs.wait_for(both_running, timeout=30, interval=0.5,
                             what="both fan-outs running on all six agents")
        time.sleep(0.5)  # commands are running on the agents
        r1.stop(sig=signal.SIGKILL)

        # its agents re-link to the surviving replicas
        coral_procs.wait_for(
            lambda: all(_holders(replica_set.dsn_file).get(a) in ("r0", "r2") for a in on_r1),
            timeout=RELINK_WITHIN, what=f"{on_r1} re-linked to r0/r2 after SIGKILL of r1")
        for run in runs:
            run.join(90)

        # the fan-out run by r0: targets whose link r1 held were cut off -> interrupted
        via_r0 = outcomes["via-r0"]
        assert isinstance(via_r0, client.ExecOutcome), via_r0
        status = {r["agent"]: r["status"] for r in via_r0.results}
        assert status == {a: ("interrupted" if a in on_r1 else "ok") for a in ids}, status
        assert isinstance(outcomes["via-r1"], client.CoralError)  # its replica died

        # the fan-out r1 ran is closed as interrupted by a survivor that saw r1's heartbeat stop
        def r1_ops_closed() -> bool:
            with r2.client() as c:
                ops = _by_op(c.audit(limit=100000))
            mine = [rs for rs in ops.values() if rs[0].get("replica") == "r1"]
            return len(mine) == 6 and all(len(rs) == 2 for rs in mine)
        coral_procs.wait_for(r1_ops_closed, timeout=30, what="r1's operations closed")
        with r2.client() as c:
            records = c.audit(limit=100000)
            verified = c.verify_audit()
        assert verified["ok"] in (True, "true"), verified
        # no record lost: ids are 1..N, every started has exactly one end record
        assert [r["id"] for r in records] == list(range(1, len(records) + 1))
        ops = _by_op(records)
        assert all([r["kind"] for r in rs] == ["started", "finished"] for rs in ops.values())
        ends = [rs[1] for rs in ops.values() if rs[0].get("replica") == "r1"]
        assert {e["status"] for e in ends} == {"interrupted"}
        assert all("replica r1 stopped answering" in e["error"] for e in ends)

        # new operations succeed, through a client whose first address is the dead replica
        dead_first = replica_set.view(1, 0, 2)
        with client.connect(dead_first.address, ca_file=str(dead_first.data_dir / "ca.crt"),
                            token=(dead_first.data_dir / "admin.token").read_text().strip()
                            ) as c:
            outcome = c.exec(client.Targeting(all=True), argv=["echo", "after"])
        assert [(r["agent"], r["status"]) for r in outcome.results] == [(a, "ok") for a in ids]
    finally:
        for agent in agents:
            agent.stop()
