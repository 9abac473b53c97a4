"""RSS of a DaemonSet agent process (`coral agent node`) with 110 pods discovered
(target: < 50 MB).

A real colony process and a real agent process watch the in-repo API server fixture,
which holds 110 pods on the agent's node; once the colony lists all 110 services the
agent's RSS and USS (memory only it uses: no shared libraries) are read with psutil,
again after 30 pod events. The agent is started two ways, each in a fresh world:
`coral agent node` (the CLI entry a DaemonSet runs) and `python -m
coral_lib.commands.agent_node`. The import-time RSS of each entry is measured in a fresh
interpreter for comparison. No CRI socket here (`--cri-socket ""`: exec through nsenter;
a socket path that nothing answers on is refused at start): with containerd present the
agent also loads the CRI stubs (+~0.6 MB at import).

The agent runs with the process settings the rendered DaemonSet gives its container
(`manifest_tuning_env`: the allocator's arena limit, PYTHONOPTIMIZE=2), not the bench's
bare environment. The image carries optimization-2 bytecode; the runner writes the same
for the checkout and the venv before any benchmark (common.compile_bytecode).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_discovery  # noqa: E402
from coral_lib.manifests import daemonset, settings  # noqa: E402
from tests.support import coral_procs  # noqa: E402

PODS = 110
TARGET_MB = 50
MB = 1 << 20
NODE = bench_discovery.NODE
ENTRIES = {  # figure prefix -> how the agent is started
    "cli": ["-m", "coral_lib.cli", "agent", "node"],
    "module": ["-m", "coral_lib.commands.agent_node"],
}
IMPORTS = {
    "cli": "from coral_lib import cli; cli.build_parser(['agent', 'node'])",
    "module": "import coral_lib.commands.agent_node",
}


def manifest_tuning_env() -> dict[str, str]:
    """The process settings of the rendered DaemonSet's agent container: its literal
    environment values that are not Coral's own configuration (CORAL_*) and refer to no
    other variable."""
    container = daemonset.daemon_set(settings.ManifestSettings())["spec"]["template"][
        "spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]
            if "value" in e and not e["name"].startswith("CORAL_") and "$(" not in e["value"]}


def _agent_env() -> dict[str, str]:
    return {**os.environ, **manifest_tuning_env()}


def _memory(pid: int) -> tuple[float, float]:
    info = psutil.Process(pid).memory_full_info()
    return info.rss / MB, info.uss / MB


def _import_rss(code: str) -> float:
    """RSS after `code` in a fresh interpreter with the agent's settings."""
    probe = f"{code}; import psutil; print(psutil.Process().memory_info().rss)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=str(bench_discovery.ROOT), env=_agent_env())
    return int(out.stdout) / MB


def _start_agent(base: Path, server, colony, entry: list[str]) -> subprocess.Popen:
    cfg = base / "agent.yaml"
    cfg.write_text(bench_discovery.agent_config(base, server, colony))
    with open(base / "agent.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, *entry, "--config", str(cfg), "--kubeconfig",
             server.kubeconfig_path, "--node-name", NODE, "--cri-socket", "",
             "--state-dir", str(base / "state")],
            stdout=log, stderr=log, cwd=str(bench_discovery.ROOT), env=_agent_env())


def measure(entry: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-agent-rss-") as tmp:
        base = Path(tmp)
        server = bench_discovery.start_server(base / "kubeapi", pods=PODS)
        colony = bench_discovery.start_colony(base, server)
        agent = bench_discovery.AgentProc(_start_agent(base, server, colony, entry))
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
    return {"rss_mb": round(rss, 1), "uss_mb": round(uss, 1),
            "rss_after_events_mb": round(rss_after, 1)}


def run() -> dict:
    figures: dict = {"pods": PODS, "env": manifest_tuning_env()}
    for name, entry in ENTRIES.items():
        for key, value in measure(entry).items():
            figures[f"agent_{name}_{key}"] = value
        figures[f"agent_{name}_import_rss_mb"] = round(_import_rss(IMPORTS[name]), 1)
    figures["agent_rss_mb"] = figures["agent_cli_rss_mb"]  # what a DaemonSet pod runs
    figures["agent_uss_mb"] = figures["agent_cli_uss_mb"]
    figures["target_mb"] = TARGET_MB
    return figures


def main() -> None:
    figures = run()
    for key, value in figures.items():
        print(f"{key}: {value}")
    ok = figures["agent_rss_mb"] < TARGET_MB
    print("RSS target met" if ok else "RSS target NOT met")


if __name__ == "__main__":
    main()
