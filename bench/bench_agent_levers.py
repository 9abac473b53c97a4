"""What each memory lever bought (issue 15, "A leaner agent"): RSS and USS of a real host
agent (`coral agent start`, 3 explicit services), a real sidecar agent (in a real pod,
bench_memory's world) and a real DaemonSet agent (`coral agent node`, 110 pods,
bench_agent_rss's world), each started several ways, each in a fresh world:

* `as_built`: the agent as this checkout starts it.
* `eager_imports`: the same code, but first importing what `coral` imported before its
  commands and the agent's shell/tap/trace backends loaded lazily (EAGER_HOST: every
  module `coral agent start` loaded before parsing at commit 1cf02ea; EAGER_NODE: the
  backends, as `coral agent node` had its own fast path already); eager_imports minus
  as_built is what lazy loading bought.
* `validation_loaded`: as_built, but first importing what the agent held at run time
  before its config was validated in a forked child (coral_lib.config.view): pydantic,
  the config models, the loader and YAML (coral_lib.config.loader brings them all), and
  http.client (now loaded only by active health probes); validation_loaded minus as_built
  is what keeping validation off the run-time path bought (`*_config_in_child_bought_*`).
* `arena_max_2`: as_built with MALLOC_ARENA_MAX=2 (glibc keeps at most two malloc arenas
  instead of one per thread up to 8 x cores); what the allocator setting buys. The host
  agent is measured again after a burst of 64 execs, 16 at a time (each printing ~200 KB),
  since arenas grow with threads that allocate.

Also the import cost, in a fresh interpreter that already holds the rest of the agent's
modules, of what stays on the run-time path: pydantic + the config models, and
cryptography (every Mesh call is signed with the agent's key, so it stays loaded).
One sample per figure (RSS is steady once the agent has settled), read with psutil.

    .venv/bin/python -m bench --only agent_levers [--quick]
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import bench_agent_rss  # noqa: E402
from tests.support import coral_procs  # noqa: E402

MB = 1 << 20
SETTLE_S = 3.0
BURST_OPS, BURST_PARALLEL = 64, 16
BACKENDS = "coral_lib.ops.tap coral_lib.ops.trace coral_lib.ops.pty_session"
# What `coral agent start` imported before parsing at commit 1cf02ea (every command module
# and what they imported), less the agent modules it loads anyway.
EAGER_HOST = BACKENDS + """ coral_lib.client coral_lib.colony.server coral_lib.colony.pki
coral_lib.colony.policy coral_lib.colony.checkpoints coral_lib.colony.enrollment
coral_lib.colony.audit coral_lib.colony.registry coral_lib.colony.rbac coral_lib.colony.guard
coral_lib.webhook.server coral_lib.webhook.certs coral_lib.webhook.settings coral_lib.manifests
coral_lib.manifests.settings coral_lib.supervise coral_lib.agent.node coral_lib.discovery.kubeclient
coral_lib.commands.agent coral_lib.commands.colony coral_lib.commands.operator
coral_lib.commands.shell coral_lib.commands.daemon coral_lib.commands.webhook
coral_lib.commands.manifests coral_lib.commands.approve coral_lib.commands.tap
coral_lib.commands.trace coral_lib.commands.policy"""
EAGER_NODE = BACKENDS
# What the agent process held before its config was validated in a forked child.
VALIDATION = "coral_lib.config.loader http.client"
# `-c` code: import the listed modules, drop the marker argument, run `coral`. The marker
# keeps "coral_lib.cli" in the process's argv, where bench_memory.coral_pid looks for it.
EAGER = ("import importlib, sys; [importlib.import_module(m) for m in {modules!r}.split()]; "
         "sys.argv.remove('coral_lib.cli'); from coral_lib import cli; sys.exit(cli.main())")
AS_BUILT = ["-m", "coral_lib.cli"]


def variants(eager: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (python argv, extra environment)"""
    return {"as_built": (AS_BUILT, {}),
            "eager_imports": (["-c", EAGER.format(modules=eager), "coral_lib.cli"], {}),
            "validation_loaded": (["-c", EAGER.format(modules=VALIDATION), "coral_lib.cli"],
                                  {}),
            "arena_max_2": (AS_BUILT, {"MALLOC_ARENA_MAX": "2"})}

# Modules the agent holds on its run-time path, for the import-cost figures.
AGENT_REST = ("grpc", "coral_lib.agent.handlers", "coral_lib.agent.session",
              "coral_lib.discovery.host", "coral_lib.discovery.kubeclient", "yaml")
IMPORT_COSTS = {
    "pydantic_and_config": ("pydantic", "coral_lib.config"),
    "cryptography": ("cryptography.x509", "cryptography.hazmat.primitives.asymmetric.ec"),
}


@contextlib.contextmanager
def environment(extra: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(extra)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def memory_mb(pid: int) -> tuple[float, float]:
    info = psutil.Process(pid).memory_full_info()
    return round(info.rss / MB, 1), round(info.uss / MB, 1)


def exec_burst(colony: coral_procs.Colony, agent_id: str) -> None:
    """BURST_OPS execs through the colony, BURST_PARALLEL at a time, each printing ~200 KB:
    the agent's op threads allocate, which is where per-thread malloc arenas grow."""
    from coral_lib import client

    def one(_: int) -> None:
        with colony.client() as c:
            outcome = c.exec(client.Targeting(agent=agent_id), argv=["seq", "1", "40000"])
        if outcome.failed:
            raise RuntimeError(f"burst exec failed: {outcome.results}")

    with concurrent.futures.ThreadPoolExecutor(BURST_PARALLEL) as pool:
        list(pool.map(one, range(BURST_OPS)))


def host_agent(python_argv: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-levers-") as tmp, environment(env):
        base = Path(tmp)
        colony = coral_procs.Colony(base / "colony").start()
        services = [{"name": f"svc-{i}", "port": 8000 + i} for i in range(3)]
        agent = coral_procs.Agent(base / "agent", colony, agent_id="bench-levers",
                                  services=services)
        # Agent.command, not coral_procs.CORAL: the class reads CORAL once, when defined.
        agent.command = (sys.executable, *python_argv)
        agent.start()
        try:
            coral_procs.wait_registered(colony, ["bench-levers"])
            time.sleep(SETTLE_S)
            rss, uss = memory_mb(agent.proc.pid)
            exec_burst(colony, "bench-levers")
            time.sleep(SETTLE_S)
            return rss, uss, memory_mb(agent.proc.pid)[0]
        finally:
            agent.stop()
            colony.stop()


def sidecar_agent(python_argv: list[str], env: dict[str, str]) -> tuple[float, float] | None:
    """None when this machine cannot run the pod harness (bench_memory says why)."""
    from bench import bench_memory

    with tempfile.TemporaryDirectory(prefix="bench-levers-") as tmp, environment(env):
        saved, coral_procs.CORAL = coral_procs.CORAL, [sys.executable, *python_argv]
        try:
            figures = bench_memory.sidecar_agent_figures(Path(tmp))
        finally:
            coral_procs.CORAL = saved
    if "sidecar_agent_rss_mb" not in figures:
        return None
    return figures["sidecar_agent_rss_mb"], figures["sidecar_agent_uss_mb"]


def daemonset_agent(python_argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    with environment(env):
        figures = bench_agent_rss.measure([*python_argv, "agent", "node"])
    return figures["rss_mb"], figures["uss_mb"]


def import_cost_mb(modules: tuple[str, ...]) -> float:
    """RSS added by importing `modules` into an interpreter that holds AGENT_REST."""
    code = ("import importlib, sys\n"
            "def rss():\n    return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
            f"[importlib.import_module(m) for m in {AGENT_REST!r}]\n"
            "before = rss()\n"
            f"[importlib.import_module(m) for m in {modules!r}]\n"
            "print(rss() - before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(ROOT))
    return round(int(out.stdout) / MB, 1)


QUICK_VARIANTS = ("as_built", "validation_loaded")


def run(*, quick: bool = False) -> dict:
    """quick (a smoke run): the host and DaemonSet agents, as_built and validation_loaded."""
    figures: dict = {"daemonset_pods": bench_agent_rss.PODS, "samples_per_figure": 1,
                     "quick": quick}
    agents = (("host", host_agent, EAGER_HOST), ("sidecar", sidecar_agent, EAGER_HOST),
              ("daemonset", daemonset_agent, EAGER_NODE))
    for agent, measure, eager in agents:
        if quick and agent == "sidecar":
            continue
        for variant, (argv, env) in variants(eager).items():
            if quick and variant not in QUICK_VARIANTS:
                continue
            measured = measure(argv, env)
            if measured is None:
                figures[f"{agent}_skipped"] = "the pod harness cannot run here"
                break
            rss, uss, *burst = measured
            if burst:
                figures[f"{agent}_{variant}_after_exec_burst_rss_mb"] = burst[0]
            figures[f"{agent}_{variant}_rss_mb"] = rss
            figures[f"{agent}_{variant}_uss_mb"] = uss
        if f"{agent}_skipped" in figures:
            continue
        built = figures[f"{agent}_as_built_rss_mb"]
        for unit in ("rss", "uss"):
            figures[f"{agent}_config_in_child_bought_{unit}_mb"] = round(
                figures[f"{agent}_validation_loaded_{unit}_mb"]
                - figures[f"{agent}_as_built_{unit}_mb"], 1)
        if quick:
            continue
        figures[f"{agent}_lazy_imports_bought_mb"] = round(
            figures[f"{agent}_eager_imports_rss_mb"] - built, 1)
        figures[f"{agent}_arena_max_2_bought_mb"] = round(
            built - figures[f"{agent}_arena_max_2_rss_mb"], 1)
        if f"{agent}_as_built_after_exec_burst_rss_mb" in figures:
            figures[f"{agent}_arena_max_2_bought_after_exec_burst_mb"] = round(
                figures[f"{agent}_as_built_after_exec_burst_rss_mb"]
                - figures[f"{agent}_arena_max_2_after_exec_burst_rss_mb"], 1)
    for name, modules in IMPORT_COSTS.items():
        figures[f"import_cost_{name}_mb"] = import_cost_mb(modules)
    return figures


def main() -> None:
    for key, value in run().items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
