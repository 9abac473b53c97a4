"""CLI start-up: wall time of `coral --help` and of a single-target `coral exec`, hyperfine
style (a few warm-up runs discarded, then N timed runs of the whole process; median and
max of wall time, median CPU time; p90 only when N >= 1,000). Goals (issue 15):
`coral --help` <= 100 ms, single-target exec <= 300 ms.

The commands run as users run them: the `coral` console script of this interpreter's
environment (PYTHONPATH points it at this checkout), else `python -c "from coral_lib.cli
import main"`. The exec goes to a real colony and a real host agent on loopback (gRPC over
TLS), connection from CORAL_* variables as in CI/AWX, command `true`.

For comparison it also times `--help` after first importing what `coral` imported before
parsing until commands loaded lazily (bench_agent_levers.EAGER_HOST plus the agent and
config modules: the import work `coral --help` did at commit 1cf02ea).

    .venv/bin/python -m bench --only cli [--quick]
"""

from __future__ import annotations

import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import bench_agent_levers, common  # noqa: E402
from tests.support import coral_procs  # noqa: E402

HELP_TARGET_MS = 100
EXEC_TARGET_MS = 300
WARMUP = 3
PERCENTILE_MIN = 1000
AGENT = "bench-cli"
OLD_IMPORTS = bench_agent_levers.EAGER_HOST + (
    " coral_lib.config coral_lib.agent.modes coral_lib.agent.runner coral_lib.agent.local_server")


def coral_argv() -> tuple[list[str], str]:
    """How to start `coral`, and a name for it in the figures."""
    script = pathlib.Path(sys.executable).parent / "coral"
    if script.exists():
        return [sys.executable, str(script)], "console script"
    return [sys.executable, "-c", "import sys; from coral_lib.cli import main; "
            "sys.exit(main())"], "python -c main()"


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_runs(argv: list[str], *, runs: int, env: dict[str, str],
               ) -> tuple[list[float], list[float]]:
    """Wall seconds and CPU seconds (user + system of the process) of `runs` complete runs
    of argv, after WARMUP untimed ones. CPU time says what start-up costs even when other
    work shares the machine and stretches the wall time."""
    wall, cpu = [], []
    for i in range(WARMUP + runs):
        cpu_before, started = _cpu_children(), time.perf_counter()
        proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, cwd=str(ROOT))
        elapsed, used = time.perf_counter() - started, _cpu_children() - cpu_before
        if proc.returncode != 0:
            raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stderr[-500:]!r}")
        if i >= WARMUP:
            wall.append(elapsed)
            cpu.append(used)
    return wall, cpu


def figures(prefix: str, measured: tuple[list[float], list[float]]) -> dict[str, float]:
    """Median and max wall time, median CPU time; a p90 only from PERCENTILE_MIN samples
    (a tail percentile from fewer runs would be a guess: the max says the worst one)."""
    wall, cpu = measured
    out = {f"{prefix}_median_ms": round(common.percentile(wall, 50) * 1000, 1),
           f"{prefix}_max_ms": round(max(wall) * 1000, 1),
           f"{prefix}_cpu_median_ms": round(common.percentile(cpu, 50) * 1000, 1),
           f"{prefix}_samples": len(wall)}
    if len(wall) >= PERCENTILE_MIN:
        out[f"{prefix}_p90_ms"] = round(common.percentile(wall, 90) * 1000, 1)
    return out


def load_average() -> float:
    """The 1-minute load average when a series ends: other work on the machine."""
    return round(os.getloadavg()[0], 2)


def run(*, quick: bool = False) -> dict:
    runs = 30 if quick else int(os.environ.get("BENCH_CLI_RUNS", "100"))
    coral, how = coral_argv()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out: dict = {"started_as": how, "warmup_runs": WARMUP,
                 "help_target_ms": HELP_TARGET_MS, "exec_target_ms": EXEC_TARGET_MS}
    out.update(figures("help", timed_runs([*coral, "--help"], runs=runs, env=env)))
    out["help_load_average"] = load_average()
    eager = bench_agent_levers.EAGER.format(modules=OLD_IMPORTS)
    out.update(figures("help_pre_lazy_imports", timed_runs(
        [sys.executable, "-c", eager, "coral_lib.cli", "--help"], runs=runs, env=env)))
    out.update(figures("exec_help", timed_runs([*coral, "exec", "--help"], runs=runs,
                                               env=env)))
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        base = pathlib.Path(tmp)
        colony = coral_procs.Colony(base / "colony").start()
        agent = coral_procs.Agent(base / "agent", colony, agent_id=AGENT).start()
        try:
            coral_procs.wait_registered(colony, [AGENT])
            op_env = {**env, **colony.operator_env}
            out.update(figures("exec", timed_runs(
                [*coral, "exec", "--agent", AGENT, "--", "true"], runs=runs, env=op_env)))
            out["exec_load_average"] = load_average()
        finally:
            agent.stop()
            colony.stop()
    out["help_target_met"] = out["help_median_ms"] <= HELP_TARGET_MS
    out["exec_target_met"] = out["exec_median_ms"] <= EXEC_TARGET_MS
    return out


def main() -> None:
    for key, value in run(quick="--quick" in sys.argv).items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
