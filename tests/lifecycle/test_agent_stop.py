"""An agent told to stop (SIGTERM from systemd or kubelet) exits at once with status 0, even
while its colony does not answer: a heartbeat in flight is cancelled, not waited out for its
10 s deadline. Past systemd's TimeoutStopSec (15 s in the roles' unit) the agent would be
SIGKILLed and its unit left `failed` (CI saw one after `state: absent`)."""

from __future__ import annotations

import signal
import time

from tests.support import coral_procs


def test_agent_stops_at_once_while_its_colony_hangs(tmp_path, colony):
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="vm-stops", services=[
        {"name": "billing", "port": 18092}]).start()
    try:
        coral_procs.wait_registered(colony, ["vm-stops"])
        colony.proc.send_signal(signal.SIGSTOP)  # a hung colony: calls neither fail nor end
        try:
            time.sleep(2.0)  # heartbeats every second (pollInterval 1s): one is in flight
            agent.proc.send_signal(signal.SIGTERM)
            # the old agent waited out the heartbeat's 10 s deadline (~9 s from here)
            assert agent.proc.wait(timeout=5) == 0, agent.log()[-2000:]
        finally:
            colony.proc.send_signal(signal.SIGCONT)
    finally:
        agent.stop()
