"""Memory: RSS (and USS, memory only that process uses) of an idle colony, a colony
holding 100,000 services (1,000 agents x 100), an idle host agent, an idle sidecar agent
in a real pod (pod harness: namespaces + cgroups, the agent with --monitor-all) and the
DaemonSet agent with 110 pods (bench_agent_rss). Target: agents under 50 MB.

The host agent is read idle and again after WORK_EXECS execs through the colony
(`host_agent_after_work_*`), as bench_pod_memory reads its agents: an agent gives back its
start-up pages once settled (coral_lib.pagecache), so an idle reading alone would flatter
it; what the exec path faults back in counts. Issue 15's "host agent <= 45 MB" is read on
the after-work figure.

Every process is the real command (`coral colony start`, `coral agent start`,
`coral agent node`); figures are read with psutil after the process has settled. Each agent
gets the environment its deployment gives it: the host agent the one its systemd unit
sets (the role's `_coral_agent_environment`, read from roles/agent_host/vars/main.yml), the
sidecar the allocator setting the webhook injects (coral_lib.webhook.inject.allocator_env).

The page cache is dropped first (root only; `page_cache_dropped`): RSS counts the library
pages an agent maps, shared or not, and how many a fault maps depends on the folios the
page cache holds, which depend on how the files entered it (right after a fresh install the
host agent read about 10 MB more RSS, its USS unchanged). Read afresh, they are cached in
folios up to the disk's read-ahead window, recorded with each entry (bench/common.py).

    .venv/bin/python -m bench --only memory [--quick]
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import bench_colony_scale, common  # noqa: E402
from tests.support import coral_procs  # noqa: E402

MB = 1 << 20
# where the host agent's unit environment is defined (roles/agent_host/tasks/present.yml
# passes it to the unit and to the supervisor as _coral_environment)
AGENT_ROLE_VARS = ROOT / "roles/agent_host/vars/main.yml"
AGENT_TARGET_MB = 50
SETTLE_S = 3.0
WORK_EXECS = 5


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, USS) in MB of one process."""
    info = psutil.Process(pid).memory_full_info()
    return round(info.rss / MB, 1), round(info.uss / MB, 1)


def coral_pid(root_pid: int) -> int:
    """The python process running coral under a wrapper chain (nsenter, unshare, sh)."""
    for proc in [psutil.Process(root_pid), *psutil.Process(root_pid).children(recursive=True)]:
        argv = proc.cmdline()
        if argv and "python" in os.path.basename(argv[0]) and "coral_lib.cli" in argv:
            return proc.pid
    raise RuntimeError(f"no coral process under pid {root_pid}")


def colony_figures(base: Path, *, agents: int) -> dict:
    colony = coral_procs.Colony(base / "colony").start()
    try:
        time.sleep(SETTLE_S)
        idle = memory_mb(colony.proc.pid)
        asyncio.run(bench_colony_scale.load(colony, agents=agents))
        time.sleep(SETTLE_S)
        loaded = memory_mb(colony.proc.pid)
    finally:
        colony.stop()
    services = agents * bench_colony_scale.PER_AGENT
    return {"colony_idle_rss_mb": idle[0], "colony_idle_uss_mb": idle[1],
            "colony_loaded_services": services,
            "colony_loaded_rss_mb": loaded[0], "colony_loaded_uss_mb": loaded[1]}


def unit_environment() -> dict[str, str]:
    """The variables the host agent's systemd unit sets (Environment= lines): the role's
    _coral_agent_environment, read where the role defines it."""
    values = yaml.safe_load(AGENT_ROLE_VARS.read_text())["_coral_agent_environment"]
    templated = sorted(name for name, value in values.items() if "{{" in str(value))
    if templated:  # a Jinja expression would need Ansible to evaluate: say so, not guess
        raise RuntimeError(f"{AGENT_ROLE_VARS}: _coral_agent_environment {templated} are "
                           "templated; the bench reads literal values only")
    return {str(name): str(value) for name, value in values.items()}


def host_agent_env() -> dict[str, str]:
    """The bench's environment with the unit's variables on top, as systemd starts it."""
    return {**os.environ, **unit_environment()}


def sidecar_agent_env() -> dict[str, str]:
    """The injected sidecar's allocator setting (the rest of the pod's environment comes
    from the pod harness)."""
    from coral_lib.webhook import inject
    allocator = inject.allocator_env()
    return {allocator["name"]: allocator["value"]}


def host_agent_figures(base: Path) -> dict:
    colony = coral_procs.Colony(base / "colony-host").start()
    services = [{"name": f"svc-{i}", "port": 8000 + i} for i in range(3)]
    agent = coral_procs.Agent(base / "host-agent", colony, agent_id="bench-host",
                              services=services)
    agent.env = host_agent_env()
    agent.start()
    try:
        coral_procs.wait_registered(colony, ["bench-host"])
        time.sleep(SETTLE_S)
        rss, uss = memory_mb(agent.proc.pid)
        work_execs(colony, "bench-host")
        time.sleep(SETTLE_S)
        work_rss, work_uss = memory_mb(agent.proc.pid)
    finally:
        agent.stop()
        colony.stop()
    return {"host_agent_rss_mb": rss, "host_agent_uss_mb": uss,
            "host_agent_work_execs": WORK_EXECS,
            "host_agent_after_work_rss_mb": work_rss, "host_agent_after_work_uss_mb": work_uss}


def work_execs(colony: coral_procs.Colony, agent_id: str) -> None:
    """WORK_EXECS real execs through the colony on one agent, each checked ok."""
    from coral_lib import client

    with colony.client() as c:
        for _ in range(WORK_EXECS):
            outcome = c.exec(client.Targeting(agent=agent_id),
                             argv=["cat", "/proc/self/status"], timeout=60)
            if outcome.failed or not outcome.results:
                raise RuntimeError(f"work exec on {agent_id} failed: {outcome.results}")


def sidecar_agent_figures(base: Path) -> dict:
    from tests.sidecar.conftest import why_not_runnable
    from tests.sidecar_agent.conftest import SidecarAgent
    from tests.support import podharness
    reason = why_not_runnable()
    if reason:
        return {"sidecar_agent_skipped": reason}
    from tests.support import kube_identity
    from tests.support.kubeapi import KubeAPIServer
    kubeapi = KubeAPIServer(base / "kubeapi-sidecar", nodes=["node-1"]).start()
    kubeconfig = kube_identity.colony_kubeconfig(kubeapi, base / "colony-sidecar-kc")
    colony = coral_procs.Colony(base / "colony-sidecar",
                                args=("--token-review-kubeconfig", kubeconfig)).start()
    pod = podharness.Pod("bench-shop", "payments").start()
    agent = None
    try:
        pod.add_container("web", ["python3", "-m", "http.server", "8080", "--bind",
                                  "127.0.0.1"], port=8080)
        pod.add_container("worker", ["sleep", "100000"])
        work = base / "sidecar"
        work.mkdir()
        agent = SidecarAgent(pod, colony, work, kubeapi)
        agent.extra_env.update(sidecar_agent_env())
        agent.start()
        coral_procs.wait_registered(colony, [agent.agent_id])
        time.sleep(SETTLE_S)
        rss, uss = memory_mb(coral_pid(agent.proc.pid))
    finally:
        if agent:
            agent.stop()
        pod.stop()
        colony.stop()
        kubeapi.stop()
    return {"sidecar_agent_rss_mb": rss, "sidecar_agent_uss_mb": uss}


def daemonset_figures() -> dict:
    try:
        module = importlib.import_module("bench.bench_agent_rss")
    except ImportError as exc:
        return {"daemonset_agent_skipped": f"bench_agent_rss not available: {exc}"}
    figures = module.run()
    return {"daemonset_agent_pods": figures["pods"],
            "daemonset_agent_rss_mb": figures["agent_rss_mb"],
            "daemonset_agent_uss_mb": figures["agent_uss_mb"],
            "daemonset_agent_env": figures["env"]}


def verdict(figures: dict) -> dict:
    agents = {k: v for k, v in figures.items()
              if k.endswith("agent_rss_mb") and isinstance(v, float | int)}
    over = {k: v for k, v in agents.items() if v >= AGENT_TARGET_MB}
    return {"agent_rss_target_mb": AGENT_TARGET_MB, "agent_rss_target_met": not over,
            "agent_rss_over_target": over}


def run(*, quick: bool = False) -> dict:
    # libraries read afresh, in folios of this disk's read-ahead window (common.read_ahead_kb)
    figures: dict = {"page_cache_dropped": common.drop_page_cache()}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        base = Path(tmp)
        figures.update(colony_figures(base, agents=100 if quick else 1000))
        figures.update(host_agent_figures(base))
        figures.update(sidecar_agent_figures(base))
    figures.update(daemonset_figures())
    figures.update(verdict(figures))
    return figures


def main() -> None:
    figures = run(quick="--quick" in sys.argv)
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
