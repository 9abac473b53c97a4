"""`make bench`: run every bench/bench_*.py module, print a table, write bench/results.json.

Each module runs in its own child process (a crash or a leaked thread in one cannot spoil
the next one's figures); a module that fails is recorded with its error and the runner
goes on, then exits 1.

    .venv/bin/python -m bench [--only NAME ...] [--quick] [--out bench/results.json]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
# Smaller workloads for --quick in modules that read their size from the environment.
QUICK_ENV = {"BENCH_QUICK": "1", "BENCH_DISCOVERY_EVENTS": "200"}


def discover() -> list[str]:
    return sorted(p.stem for p in HERE.glob("bench_*.py"))


def select(names: list[str], only: list[str]) -> list[str]:
    """Modules named by --only (with or without the bench_ prefix); all when none given."""
    if not only:
        return names
    wanted = {o if o.startswith("bench_") else f"bench_{o}" for o in only}
    unknown = sorted(wanted - set(names))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; "
                         f"known: {', '.join(n.removeprefix('bench_') for n in names)}")
    return [n for n in names if n in wanted]


def child(name: str, out: str, quick: bool) -> int:
    """Import bench.<name>, call run(), write its figures (or the error) as JSON to `out`."""
    sys.path.insert(0, str(ROOT))
    try:
        module = importlib.import_module(f"bench.{name}")
        params = inspect.signature(module.run).parameters
        figures = module.run(quick=True) if quick and "quick" in params else module.run()
        body = {"figures": figures}
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded, not raised
        body = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    pathlib.Path(out).write_text(json.dumps(body, default=str))
    return 1 if "error" in body else 0


def run_one(name: str, *, quick: bool, timeout: float) -> dict:
    env = {**os.environ, **(QUICK_ENV if quick else {})}
    with tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".json") as out:
        argv = [sys.executable, "-m", "bench", "--child", name, "--out", out.name]
        if quick:
            argv.append("--quick")
        started = time.monotonic()
        try:
            proc = subprocess.run(argv, cwd=str(ROOT), env=env, timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
        seconds = round(time.monotonic() - started, 1)
        text = pathlib.Path(out.name).read_text()
    body = json.loads(text) if text else {}
    if code is None:
        body.setdefault("error", f"timed out after {timeout:.0f}s")
    elif not body:
        body = {"error": f"child process exited with code {code} before reporting"}
    return {**body, "seconds": seconds}


def table(results: dict[str, dict]) -> str:
    rows = []
    for name, result in results.items():
        short = name.removeprefix("bench_")
        if "error" in result:
            rows.append((short, "ERROR", result["error"].splitlines()[0][:100]))
            continue
        for key, value in result["figures"].items():
            rows.append((short, key, json.dumps(value) if isinstance(value, dict | list)
                         else str(value)))
        rows.append((short, "(wall seconds)", str(result["seconds"])))
    width = [max(len(r[i]) for r in rows) for i in range(2)] if rows else [0, 0]
    return "\n".join(f"{a:<{width[0]}}  {b:<{width[1]}}  {c}" for a, b, c in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only this benchmark (repeatable), e.g. --only webhook")
    parser.add_argument("--quick", action="store_true", help="smaller workloads, a fast pass")
    parser.add_argument("--out", default=str(HERE / "results.json"))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.out, args.quick)
    names = select(discover(), args.only)
    if args.list:
        print("\n".join(n.removeprefix("bench_") for n in names))
        return 0
    from bench import common
    started, results = common.now_utc(), {}
    for name in names:
        print(f"== {name}", flush=True)
        results[name] = run_one(name, quick=args.quick, timeout=args.timeout)
        if "error" in results[name]:
            print(f"!! {name} failed: {results[name]['error']}", flush=True)
    report = {"date": started, "finished": common.now_utc(), "quick": args.quick,
              "command": "make bench" if not (args.quick or args.only) else
              " ".join([".venv/bin/python -m bench", *sys.argv[1:]]),
              "machine": common.machine(), "versions": common.versions(), "results": results}
    pathlib.Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\n{table(results)}\n\nwritten: {args.out}")
    failed = [n for n, r in results.items() if "error" in r]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
