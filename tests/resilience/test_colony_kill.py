"""Issue 6 acceptance (tamper-evident audit): kill -9 the colony while 50 fan-out
operations run; after restart every started operation has an end record (finished or
interrupted), `coral audit verify` passes and the agents register and link again."""

from __future__ import annotations

import collections
import concurrent.futures
import signal

from coral_lib import client
from tests.support import coral_procs

AGENTS = ("kill-a", "kill-b", "kill-c")


def _fan_out(colony: coral_procs.Colony) -> str:
    try:
        with colony.client() as c:
            c.exec(client.Targeting(all=True), argv=["sleep", "2"], timeout=30)
        return "done"
    except client.CoralError as exc:
        return type(exc).__name__


def test_kill_9_during_50_fan_outs_leaves_every_started_op_ended(tmp_path):
    colony = coral_procs.Colony(tmp_path / "colony").start()
    agents = [coral_procs.Agent(tmp_path / "agents", colony, agent_id=a).start()
              for a in AGENTS]
    pool = concurrent.futures.ThreadPoolExecutor(50)
    try:
        coral_procs.wait_registered(colony, list(AGENTS))
        futures = [pool.submit(_fan_out, colony) for _ in range(50)]

        def many_started() -> bool:
            with colony.client() as c:
                return len(c.audit(kind="started", limit=5000)) >= 60
        coral_procs.wait_for(many_started, timeout=30, interval=0.2,
                             what="operations under way")
        colony.stop(signal.SIGKILL)
        outcomes = collections.Counter(f.result(timeout=60) for f in futures)
        assert outcomes["done"] < 50, outcomes

        colony.start()
        coral_procs.wait_registered(colony, list(AGENTS), timeout=60)
        with colony.client() as c:
            started = c.audit(kind="started", limit=100_000)
            ended = {r["op_id"]: r["status"] for r in c.audit(kind="finished", limit=100_000)}
        assert len(started) >= 60
        missing = [r["op_id"] for r in started if r["op_id"] not in ended]
        assert missing == []
        assert "interrupted" in ended.values()
        verify = coral_procs.coral("audit", "verify", env=colony.operator_env)
        assert verify.returncode == 0 and '"ok": true' in verify.stdout, verify.stdout
        run = coral_procs.coral("exec", "--all", "--", "true", env=colony.operator_env)
        assert run.returncode == 0, run.stderr
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        for agent in agents:
            agent.stop()
        colony.stop()
