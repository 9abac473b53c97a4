"""CI wall time (issue 15; team guide: CI has 90 minutes, keep it well under 30): the README's
test command runs the suite on parallel workers, and the scheduler's units are real."""

from __future__ import annotations

import pathlib

from tests.support import parallel

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_test_command_runs_on_parallel_workers_with_the_scheduler():
    script = (ROOT / "tools/test.sh").read_text()
    assert "-n " in script and "--dist loadfile" in script
    assert "pytest-xdist" in (ROOT / "requirements-dev.txt").read_text().split()
    assert "pytest-xdist==" in (ROOT / "constraints.txt").read_text()


def test_units_are_files_except_fixture_sharing_directories():
    assert parallel.unit_of("tests/hosts/test_life.py::test_x") == "tests/hosts"
    assert parallel.unit_of("tests/kube_e2e/test_rollout.py::test_x[a::b]") == "tests/kube_e2e"
    assert parallel.unit_of("tests/config/test_durations.py::test_x[1s]") == \
        "tests/config/test_durations.py"
    assert parallel.unit_of("tests/test_top.py::test_x") == "tests/test_top.py"


def test_every_named_unit_exists_so_a_rename_cannot_silently_drop_it():
    for directory in parallel.SHARED_DIRECTORIES:
        assert (ROOT / "tests" / directory / "conftest.py").is_file(), directory
    for unit in parallel.SLOW_FIRST:
        assert (ROOT / unit).exists(), unit


def test_slow_units_start_first_then_collection_order():
    queue = parallel._SlowFirstQueue()
    for unit in ("tests/a.py", parallel.SLOW_FIRST[1], "tests/b.py", parallel.SLOW_FIRST[0]):
        queue[unit] = {}
    taken = [queue.popitem(last=False)[0] for _ in range(4)]
    assert taken == [parallel.SLOW_FIRST[0], parallel.SLOW_FIRST[1], "tests/a.py", "tests/b.py"]
