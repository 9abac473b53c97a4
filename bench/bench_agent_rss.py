"""RSS of a DaemonSet agent process (`coral agent node`) with 110 pods discovered
(target: < 50 MB).

A real colony process and a real agent process watch the in-repo API server fixture,
which holds 110 pods on the agent's node; once the colony lists all 110 services the
agent's RSS and USS (memory only it uses: no shared libraries) are read with psutil,
again after 30 pod events, and the import-time baseline of the same modules is measured
in a fresh interpreter for comparison.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_discovery  # noqa: E402
from tests.support import coral_procs  # noqa: E402

PODS = 110
TARGET_MB = 50
MB = 1 << 20


def _memory(pid: int) -> tuple[float, float]:
    info = psutil.Process(pid).memory_full_info()
    return info.rss / MB, info.uss / MB


def _import_baseline() -> float:
    code = ("import psutil, coral_lib.agent.node, kubernetes.client; "
            "print(psutil.Process().memory_info().rss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(bench_discovery.ROOT))
    return int(out.stdout) / MB


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-agent-rss-") as tmp:
        server, colony, agent = bench_discovery.start_world(Path(tmp), pods=PODS)
        try:
            with colony.client() as c:
                coral_procs.wait_for(lambda: len(c.list_services()) == PODS, timeout=60,
                                     what=f"{PODS} services registered")
            time.sleep(2)  # a few heartbeats and bookmarks
            rss, uss = _memory(agent.proc.pid)
            for i in range(30):
                server.store.patch("pods", f"pre-{i}", {"metadata": {"labels": {"v": "2"}}},
                                   namespace="bench")
            time.sleep(2)
            rss_after, _ = _memory(agent.proc.pid)
        finally:
            agent.stop()
            colony.stop()
            server.stop()
    return {"pods": PODS, "agent_rss_mb": round(rss, 1), "agent_uss_mb": round(uss, 1),
            "agent_rss_after_events_mb": round(rss_after, 1),
            "import_baseline_rss_mb": round(_import_baseline(), 1), "target_mb": TARGET_MB}


def main() -> None:
    figures = run()
    for key, value in figures.items():
        print(f"{key}: {value}")
    ok = figures["agent_rss_mb"] < TARGET_MB
    print("RSS target met" if ok else "RSS target NOT met")


if __name__ == "__main__":
    main()
