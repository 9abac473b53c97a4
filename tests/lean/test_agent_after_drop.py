"""Issue 15, "host agent <= 45 MB": once registered and again after its first heartbeat the
agent unmaps its clean library pages (coral_lib.pagecache.drop_clean_mappings, beside the
page-out). A real `coral agent start` against a real colony must then still heartbeat and
run execs: what it runs faults back from the file unchanged. What it buys: bench `memory`.
"""

from __future__ import annotations

from coral_lib import client, pagecache
from tests.support import coral_procs

EXECS = 5


def _agent(colony, agent_id: str) -> dict:
    with colony.client() as c:
        return next(a for a in c.list_agents() if a["agent_id"] == agent_id)


def _clean_resident_kb(pid: int) -> int:
    """Rss of the agent's clean file mappings (what drop_clean_mappings would unmap)."""
    with open(f"/proc/{pid}/smaps", encoding="utf-8") as f:
        lines = f.readlines()
    clean = {start for start, _ in pagecache.clean_mappings(lines)}
    total, current = 0, None
    for line in lines:
        head = line.split()
        if not head[0].endswith(":"):
            current = int(head[0].split("-")[0], 16)
        elif head[0] == "Rss:" and current in clean:
            total += int(head[1])
    return total


def test_host_agent_serves_execs_and_heartbeats_after_dropping_its_clean_pages(colony, tmp_path):
    agent = coral_procs.Agent(tmp_path / "agent", colony, agent_id="dropped",
                              services=[{"name": "api", "port": 8080}]).start()
    try:
        coral_procs.wait_registered(colony, ["dropped"], timeout=60)
        seen = _agent(colony, "dropped")["last_seen"]
        # two heartbeats later the first one's release_settled() has run
        for _ in range(2):
            coral_procs.wait_for(lambda s=seen: _agent(colony, "dropped")["last_seen"] > s,
                                 timeout=30, what="a heartbeat")
            seen = _agent(colony, "dropped")["last_seen"]
        with colony.client() as c:
            for i in range(EXECS):
                outcome = c.exec(client.Targeting(agent="dropped"),
                                 argv=["sh", "-c", f"echo run-{i}"], timeout=60)
                assert not outcome.failed, outcome.results
                assert outcome.results[0]["stdout"] == f"run-{i}\n"
        coral_procs.wait_for(lambda: _agent(colony, "dropped")["last_seen"] > seen,
                             timeout=30, what="a heartbeat after the execs")
        assert _agent(colony, "dropped")["connected"]
        assert agent.proc.poll() is None, agent.log()[-3000:]
        # the drop ran: the agent holds far fewer of its libraries' pages than the colony,
        # which maps the same files and drops nothing (about 16 MB against 35 MB here)
        mine, colony_kb = _clean_resident_kb(agent.proc.pid), _clean_resident_kb(colony.proc.pid)
        print(f"clean file pages resident: agent {mine} kB, colony {colony_kb} kB")
        assert mine < colony_kb * 2 // 3
    finally:
        agent.stop()
