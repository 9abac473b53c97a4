"""Issue 15, "Benchmarks a skeptic accepts": the fan-out ratios over the floor are taken
round by round (bench/bench_fanout.py), so a machine that drifts between rounds cannot
pass or fail the goal on its own. Pure helpers only; the bench itself needs containerd."""

from __future__ import annotations

import pytest

pytest.importorskip("grpc")

from bench import bench_fanout  # noqa: E402


def test_over_floor_pairs_each_round_with_its_own_floor():
    # The machine slows by half after round 2; Coral stays 1.1x the floor of each round.
    floors = [2.0, 2.0, 3.0, 3.0, 3.0]
    assert bench_fanout.over_floor([2.2, 2.2, 3.3, 3.3, 3.3], floors) == 1.1
    # One round whose Coral run caught the slow machine and whose floor did not: one ratio
    # of five moves, the median does not. A ratio of the two medians reads 3.3 / 2.0.
    floors = [2.0, 2.0, 2.0, 3.0, 3.0]
    coral = [2.2, 2.2, 3.3, 3.3, 3.3]
    assert bench_fanout.over_floor(coral, floors) == 1.1
    assert bench_fanout.ratios(coral, floors)[2] == 1.65


def test_ratios_lists_every_round_and_refuses_unpaired_rounds():
    assert bench_fanout.ratios([3.0, 4.0], [2.0, 4.0]) == [1.5, 1.0]
    with pytest.raises(ValueError):
        bench_fanout.ratios([3.0, 4.0, 5.0], [2.0, 4.0])


def test_rounds_at_each_size():
    assert bench_fanout.rounds_for(10) == bench_fanout.rounds_for(200) == 5
    assert bench_fanout.rounds_for(1000) == 1
