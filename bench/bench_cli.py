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

Where the exec's wall time goes (`exec_phase_*`, medians of in-process runs against the
same colony and agent, imports already paid): `connect` (TLS handshake and the one probe
call of client.connect), `operate` (the Operate call: authentication, policy, the audit
`started` commit, the link round trip, the agent running the command, the `finished`
commit), `command` (of that, what the agent measured for the process itself) and `close`
(closing the channel). `exec_outside_calls_ms` is the rest of the CLI's median: start-up
(imports, argument parsing), printing and interpreter exit.

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


def exec_phases(env: dict[str, str], *, runs: int) -> dict[str, float]:
    """Median milliseconds of each phase of `runs` single-target execs made in this
    process (see the module docstring), after WARMUP untimed ones."""
    from coral_lib import client
    from coral_lib.operator import connect

    phases: dict[str, list[float]] = {"connect": [], "operate": [], "command": [], "close": []}
    for i in range(WARMUP + runs):
        started = time.perf_counter()
        colony = connect.connect(address=env["CORAL_COLONY_ADDRESS"],
                                 ca_file=env["CORAL_CA_FILE"], token_file=env["CORAL_TOKEN_FILE"])
        connected = time.perf_counter()
        outcome = colony.exec(client.Targeting(agent=AGENT), argv=["true"])
        operated = time.perf_counter()
        colony.close()
        closed = time.perf_counter()
        if outcome.failed:
            raise RuntimeError(f"exec failed: {outcome.failed}")
        if i >= WARMUP:
            for name, seconds in (("connect", connected - started),
                                  ("operate", operated - connected),
                                  ("command", outcome.results[0]["duration"]),
                                  ("close", closed - operated)):
                phases[name].append(seconds)
    return {f"exec_phase_{name}_ms": round(common.percentile(values, 50) * 1000, 1)
            for name, values in phases.items()}


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
            out.update(exec_phases(op_env, runs=runs))
            calls = sum(out[f"exec_phase_{name}_ms"] for name in ("connect", "operate", "close"))
            out["exec_outside_calls_ms"] = round(out["exec_median_ms"] - calls, 1)
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
