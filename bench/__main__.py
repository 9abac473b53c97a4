"""`make bench`: run the benchmarks, print a table, merge each one's figures into
bench/results.json, then regenerate the README's performance table from that file.

Registry (how a benchmark plugs in):
* a module `bench/bench_<name>.py` with `run(*, quick: bool = False, **params) -> dict`
  returning flat figures (name -> number, string, bool, or a small dict/list) is the
  benchmark `<name>`; `make bench` runs every one of them.
* an optional module-level `VARIANTS = {"<name>-<suffix>": {param: value}}` names opt-in
  runs of the same module with other parameters (e.g. `fanout-1000`): they run only when
  named with `--only`, never in a full `make bench`.
* figures are only ever written by this runner: each results.json entry carries the
  commit, date, machine, versions and command of the run that produced it. A README row
  quotes a figure by key from bench/readme_table.py, never by hand.

Each benchmark runs in its own child process (a crash or a leaked thread in one cannot
spoil the next one's figures). A benchmark that fails keeps its previous entry, is
reported, and makes the runner exit 1. The runner refuses to start while a killed run's
pod mounts or cgroups are left (bench/leftovers.py: they slow every container start);
`--clean-leftovers` removes them.

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
RESULTS = HERE / "results.json"
README = ROOT / "README.md"
FORMAT = 2
# Smaller workloads for --quick in modules that read their size from the environment.
QUICK_ENV = {"BENCH_QUICK": "1", "BENCH_DISCOVERY_EVENTS": "200"}


def modules() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def variants(module: str) -> dict[str, dict]:
    """The opt-in variants a module declares, without importing it (its imports may be
    heavy): a literal VARIANTS assignment read from the source."""
    import ast
    tree = ast.parse((HERE / f"bench_{module}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "VARIANTS" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def registry() -> dict[str, tuple[str, dict, bool]]:
    """benchmark name -> (module, run() parameters, opt-in)."""
    found: dict[str, tuple[str, dict, bool]] = {}
    for module in modules():
        found[module] = (module, {}, False)
        for name, params in variants(module).items():
            found[name] = (module, dict(params), True)
    return found


def select(known: dict[str, tuple[str, dict, bool]], only: list[str]) -> list[str]:
    """Names given by --only (with or without a bench_ prefix); else every default one."""
    if not only:
        return [name for name, (_, _, opt_in) in known.items() if not opt_in]
    wanted = [o.removeprefix("bench_") for o in only]
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [name for name in known if name in wanted]


def child(module: str, params: dict, out: str, quick: bool) -> int:
    """Import bench.bench_<module>, call run(), write its figures (or the error) to `out`."""
    sys.path.insert(0, str(ROOT))
    try:
        mod = importlib.import_module(f"bench.bench_{module}")
        accepted = inspect.signature(mod.run).parameters
        kwargs = {**params, **({"quick": True} if quick and "quick" in accepted else {})}
        body = {"figures": mod.run(**kwargs)}
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded, not raised
        body = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    pathlib.Path(out).write_text(json.dumps(body, default=str))
    return 1 if "error" in body else 0


def run_one(name: str, module: str, params: dict, *, quick: bool, timeout: float) -> dict:
    env = {**os.environ, **(QUICK_ENV if quick else {})}
    with tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".json") as out:
        argv = [sys.executable, "-m", "bench", "--child", module, "--params",
                json.dumps(params), "--out", out.name, *(["--quick"] if quick else [])]
        started = time.monotonic()
        try:
            code = subprocess.run(argv, cwd=str(ROOT), env=env, timeout=timeout).returncode
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


def entry(name: str, result: dict, *, started: str, quick: bool, only: list[str],
          load_start: float = 0.0, leftovers_at_start: dict | None = None) -> dict:
    """One results.json entry: the figures with the facts of the run that produced them."""
    from bench import common
    command = ".venv/bin/python -m bench" + (" --quick" if quick else "") + \
        (f" --only {name}" if only else "")
    if not (quick or only):
        command = "make bench"
    return {"date": started, "finished": common.now_utc(), "seconds": result["seconds"],
            "command": command, "quick": quick, **common.provenance(),
            # the machine is shared: how busy it was says how much noise the figures carry
            "load_avg_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
            # what a killed earlier run left (bench/leftovers.py): 0 unless --allow-leftovers
            "leftovers_at_start": leftovers_at_start or {},
            "machine": common.machine(), "figures": result["figures"]}


def merge(previous: dict, fresh: dict[str, dict]) -> dict:
    """results.json after a run: earlier entries kept, the ones just measured replaced.
    A file in the old one-run format (figures under bench_<name>) is not carried over:
    its entries lack their own commit and date."""
    kept = previous.get("results", {}) if previous.get("format") == FORMAT else {}
    return {"format": FORMAT,
            "about": "written by `make bench` / `python -m bench --only NAME`; never by hand",
            "results": dict(sorted({**kept, **fresh}.items()))}


def table(results: dict[str, dict]) -> str:
    rows = []
    for name, result in results.items():
        if "error" in result:
            rows.append((name, "ERROR", result["error"].splitlines()[0][:100]))
            continue
        for key, value in result["figures"].items():
            rows.append((name, key, json.dumps(value) if isinstance(value, dict | list)
                         else str(value)))
        rows.append((name, "(wall seconds)", str(result["seconds"])))
    width = [max(len(r[i]) for r in rows) for i in range(2)] if rows else [0, 0]
    return "\n".join(f"{a:<{width[0]}}  {b:<{width[1]}}  {c}" for a, b, c in rows)


def load(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only this benchmark (repeatable), e.g. --only webhook")
    parser.add_argument("--quick", action="store_true", help="smaller workloads, a fast pass")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--readme", action="store_true",
                        help="only regenerate the README performance table from --out")
    parser.add_argument("--clean-leftovers", action="store_true",
                        help="remove the mounts and pod cgroups a killed run left, and exit")
    parser.add_argument("--allow-leftovers", action="store_true",
                        help="record even though a killed run's mounts or cgroups are left")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, json.loads(args.params), args.out, args.quick)
    from bench import readme_table
    known = registry()
    if args.list:
        for name, (_, params, opt_in) in known.items():
            print(f"{name}{'  (opt-in: ' + json.dumps(params) + ')' if opt_in else ''}")
        return 0
    out = pathlib.Path(args.out)
    if args.readme:
        readme_table.update(README, load(out))
        return 0
    from bench import common, leftovers
    if args.clean_leftovers:
        counts = leftovers.clean_all()
        print(f"removed: {counts['mounts']} mounts, {counts['pod_cgroups']} pod cgroups; "
              f"left: {leftovers.found()}")
        return 0
    left = leftovers.found()
    refusal = leftovers.refusal(left)
    if refusal and not args.allow_leftovers:
        print(refusal, file=sys.stderr)
        return 2
    common.compile_bytecode()  # what an installed Coral has (see there)
    fresh, failed = {}, {}
    for name in select(known, args.only):
        module, params, _ = known[name]
        print(f"== {name}", flush=True)
        started, load_start = common.now_utc(), os.getloadavg()[0]
        result = run_one(name, module, params, quick=args.quick, timeout=args.timeout)
        if "error" in result:
            print(f"!! {name} failed: {result['error']}", flush=True)
            failed[name] = result
        else:
            fresh[name] = entry(name, result, started=started, quick=args.quick, only=args.only,
                                load_start=load_start, leftovers_at_start=left)
    print(f"\n{table({**fresh, **failed})}")
    # A --quick pass is a smoke test: it is written only to a file other than results.json.
    if fresh and not (args.quick and out.resolve() == RESULTS):
        report = merge(load(out), fresh)
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        if out.resolve() == RESULTS:
            readme_table.update(README, report)
        print(f"\nwritten: {out} ({', '.join(fresh)})")
    if failed:
        print(f"FAILED (previous entries kept): {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
