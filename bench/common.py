"""Shared helpers for the benchmarks: percentiles and the facts of the machine they ran on."""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence

PACKAGES = ("coral-lib", "grpcio", "protobuf", "ansible-core", "ansible", "kubernetes",
            "pydantic", "psutil", "cryptography", "websockets", "hypothesis")


def quick() -> bool:
    """True when the runner was asked for a fast pass (`python -m bench --quick`)."""
    return os.environ.get("BENCH_QUICK", "") == "1"


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted samples; nan when empty."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# A p99 is only named so when at least this many samples stand behind it; fewer samples
# report their max instead (one sample in a hundred is an anecdote, not a percentile).
MIN_P99_SAMPLES = 1000


def summary_ms(prefix: str, seconds: Sequence[float]) -> dict[str, float]:
    """median, p99 (only from >= MIN_P99_SAMPLES samples) and max in milliseconds, and the
    count, of samples given in seconds."""
    figures = {f"{prefix}_median_ms": round(percentile(seconds, 50) * 1000, 2)}
    if len(seconds) >= MIN_P99_SAMPLES:
        figures[f"{prefix}_p99_ms"] = round(percentile(seconds, 99) * 1000, 2)
    figures[f"{prefix}_max_ms"] = round(max(seconds) * 1000, 2) if seconds else math.nan
    figures[f"{prefix}_samples"] = len(seconds)
    return figures


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    return math.nan


def _tool_version(argv: list[str]) -> str:
    if not shutil.which(argv[0]):
        return "not installed"
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) \
        else "unknown"


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git_commit() -> str:
    out = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def _git_dirty() -> list[str]:
    """Tracked files changed since the commit (results.json and the README excepted: the
    runner itself writes them), so a figure from uncommitted code says so."""
    out = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                         capture_output=True, text=True)
    changed = [line[3:] for line in out.stdout.splitlines() if line.strip()]
    return [p for p in changed if p not in ("bench/results.json", "README.md")]


def provenance() -> dict[str, object]:
    """What a results.json entry needs to be reproduced: the commit (and whether the tree
    differed from it), and the versions of everything measured."""
    dirty = _git_dirty()
    return {"commit": _git_commit(), "dirty": dirty, "versions": versions()}


def machine() -> dict[str, object]:
    """CPU model, cores, memory, kernel, OS and the read-ahead window of the disk holding
    the code: what a reader needs to compare figures."""
    return {"cpu_model": _cpu_model(), "cores": os.cpu_count(), "memory_gib": _memory_gib(),
            "kernel": platform.release(), "os": _os_name(), "arch": platform.machine(),
            "read_ahead_kb": read_ahead_kb(os.path.dirname(os.path.abspath(__file__)))}


def compile_bytecode() -> None:
    """Write the bytecode an installed Coral has, optimization levels 0 and 2, for coral_lib
    and the venv's packages (skipping what is up to date): pip compiles at install and the
    image at build (Containerfile), but an editable checkout has none for coral_lib, and
    with PYTHONDONTWRITEBYTECODE set (as here) none is ever written, so every start would
    compile from source and measure the compiler; the DaemonSet agent runs with
    PYTHONOPTIMIZE=2, whose bytecode pip never writes."""
    import sysconfig
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path in (os.path.join(root, "coral_lib"), sysconfig.get_path("purelib")):
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "-o", "0",
                        "-o", "2", path], check=True, stdout=subprocess.DEVNULL)


def drop_page_cache() -> bool:
    """Drop the clean page cache (root only): what the measured processes read next is read
    afresh, charged to whoever reads it, in folios sized by the disk's read-ahead window
    (read_ahead_kb), not left as whatever wrote or read the files before had them (right
    after a fresh install the host agent read about 10 MB more RSS, USS unchanged)."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
    except OSError:
        return False
    return True


def read_ahead_kb(path: str) -> int | None:
    """The read-ahead window (KB) of the block device holding `path`, or None (no block
    device: tmpfs, overlay). Memory figures depend on the page cache's folios: Linux 6.18
    maps the whole folio a fault lands in, and a library read afresh (drop_page_cache) is
    cached in folios up to this window."""
    dev = os.stat(path).st_dev
    block = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
    for queue in (f"{block}/queue", f"{block}/../queue"):  # a disk, or a partition's disk
        try:
            with open(f"{queue}/read_ahead_kb") as fh:
                return int(fh.read())
        except (OSError, ValueError):
            continue
    return None


def _os_name() -> str:
    try:
        with open("/etc/os-release") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["containerd"] = _tool_version(["containerd", "--version"])
    found["runc"] = _tool_version(["runc", "--version"])
    return found


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
