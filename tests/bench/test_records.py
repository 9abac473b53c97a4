"""Issue 15, "Benchmarks a skeptic accepts": `make bench` writes bench/results.json from the
run that produced it (`--only` merges per benchmark with that benchmark's own commit, date,
machine and command); no figure is edited in by hand; the README quotes only recorded
figures; percentiles come from at least 1,000 samples, or are named `max`.

These check the recorded files and the runner's merge; they never run a benchmark.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from bench import __main__ as runner
from bench import common, readme_table

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESULTS = json.loads((ROOT / "bench" / "results.json").read_text())
README = (ROOT / "README.md").read_text()
# A measured quantity written in prose: a number with a unit.
FIGURE = re.compile(r"\d[\d,.]*\s?(ms|s|MB|GiB|×|x|/s|%|requests)\b")


def performance_section() -> str:
    start = README.index("## Performance\n")
    return README[start:README.index("\n## ", start + 1)]


def test_readme_performance_table_is_the_one_generated_from_results_json():
    """Every figure the README's performance section quotes equals the one in
    bench/results.json: the table is exactly what bench/readme_table.py renders."""
    _, block, _ = readme_table.split(performance_section())
    assert block == readme_table.render(RESULTS), \
        "README table differs from bench/results.json: run `.venv/bin/python -m bench --readme`"


def test_readme_performance_prose_quotes_no_figure_of_its_own():
    """Outside the generated table, the performance section states no measured figure."""
    before, _, after = readme_table.split(performance_section())
    found = [m.group(0) for m in FIGURE.finditer(before + after)]
    assert not found, f"figures typed into the README outside the generated table: {found}"


def test_readme_rows_quote_figures_only_through_fields():
    """A result template has no digits of its own: a number there would be hand-edited."""
    for what, result, _target in readme_table.ROWS:
        assert readme_table.formatter_ok(result), f"literal figure in the row for {what!r}"
        assert readme_table.quoted(result), f"row {what!r} quotes no recorded figure"


def test_every_quoted_figure_names_a_known_benchmark():
    known = runner.registry()
    for what, result, _ in readme_table.ROWS:
        for bench, _key in readme_table.quoted(what) + readme_table.quoted(result):
            assert bench in known, f"row {what!r} quotes unknown benchmark {bench!r}"


def test_results_json_is_per_benchmark_entries():
    """The one-run format (figures under bench_<name>, one commit for all) is gone."""
    assert RESULTS.get("format") == runner.FORMAT
    assert RESULTS["results"], "no benchmark recorded"


@pytest.mark.parametrize("name", sorted(RESULTS.get("results", {})))
def test_each_results_entry_carries_commit_date_machine_command(name):
    entry = RESULTS["results"][name]
    assert re.fullmatch(r"[0-9a-f]{7,40}", entry["commit"]), entry.get("commit")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["date"])
    assert entry["command"] in ("make bench", f".venv/bin/python -m bench --only {name}")
    assert entry["machine"]["cores"] and entry["machine"]["cpu_model"]
    assert entry["versions"]["python"]
    assert isinstance(entry["dirty"], list)
    assert entry["quick"] is False, "a --quick smoke pass was recorded as a figure"
    assert entry["figures"], "an entry without figures"


@pytest.mark.parametrize("name", sorted(RESULTS.get("results", {})))
def test_recorded_p99s_stand_on_at_least_1000_samples(name):
    """Percentiles from at least 1,000 samples, or named `max`."""
    figures = RESULTS["results"][name]["figures"]
    for key in figures:
        if not key.endswith("_p99_ms"):
            continue
        prefix = key.removesuffix("_p99_ms")
        count = figures.get(f"{prefix}_samples")
        assert isinstance(count, int) and count >= common.MIN_P99_SAMPLES, \
            f"{name}: {key} from {count} samples (needs {prefix}_samples >= 1000 or a max)"


def test_summary_names_a_max_not_a_p99_below_1000_samples():
    few = common.summary_ms("x", [0.001] * 999)
    assert "x_p99_ms" not in few and few["x_max_ms"] == 1.0 and few["x_samples"] == 999
    assert "x_p99_ms" in common.summary_ms("x", [0.001] * 1000)


def test_only_merges_per_benchmark_keeping_the_others_entries():
    """`--only NAME` replaces NAME's entry and keeps every other benchmark's own entry."""
    old = {"format": runner.FORMAT, "results": {
        "webhook": {"commit": "aaaaaaa", "date": "2026-01-01T00:00:00Z", "figures": {"a": 1}},
        "fanout": {"commit": "bbbbbbb", "date": "2026-01-02T00:00:00Z", "figures": {"b": 2}}}}
    fresh = {"webhook": {"commit": "ccccccc", "date": "2026-01-03T00:00:00Z",
                         "figures": {"a": 3}}}
    merged = runner.merge(old, fresh)["results"]
    assert merged["webhook"]["commit"] == "ccccccc" and merged["webhook"]["figures"] == {"a": 3}
    assert merged["fanout"] == old["results"]["fanout"]


def test_entry_records_the_command_that_produced_it():
    result = {"figures": {"a": 1}, "seconds": 1.0}
    only = runner.entry("webhook", result, started="2026-01-01T00:00:00Z", quick=False,
                        only=["webhook"])
    assert only["command"] == ".venv/bin/python -m bench --only webhook"
    full = runner.entry("webhook", result, started="2026-01-01T00:00:00Z", quick=False, only=[])
    assert full["command"] == "make bench"
    assert full["commit"] and full["machine"]["cores"] and full["versions"]["python"]


def test_opt_in_variants_run_only_when_named():
    """fanout-1000 is opt-in: in the registry, never in a full `make bench`."""
    known = runner.registry()
    assert known["fanout-1000"][2] is True
    assert "fanout-1000" not in runner.select(known, [])
    assert runner.select(known, ["fanout-1000"]) == ["fanout-1000"]
