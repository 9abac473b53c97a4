"""The benchmark runner refuses to record while a killed run's pod mounts or cgroups are left
(bench/leftovers.py), and --clean-leftovers removes them. A 1,000-pod run killed mid-way
left 2,913 mounts that doubled the next fan-out floor: this is the guard against that."""

from __future__ import annotations

import os
import pathlib
import subprocess
import tempfile
import uuid

import pytest

from bench import __main__ as runner
from bench import leftovers

MOUNTINFO = """\
22 1 0:21 / / rw - ext4 /dev/root rw
90 22 0:50 / /tmp/bench-fanout-abc/cri-a/pods/p1/shm rw - tmpfs shm rw
91 22 0:51 / /tmp/bench-fanout-abc/cri-a rw - tmpfs tmpfs rw
92 22 0:52 / /tmp/ctest.x/popen-gw0/shm rw - tmpfs shm rw
"""


def test_bench_mounts_lists_only_bench_directories_deepest_first():
    assert leftovers.bench_mounts(MOUNTINFO) == [
        "/tmp/bench-fanout-abc/cri-a/pods/p1/shm", "/tmp/bench-fanout-abc/cri-a"]


def test_refusal_names_what_is_left_and_the_way_out():
    assert leftovers.refusal({"mounts": 0, "pod_cgroups": 0}) == ""
    text = leftovers.refusal({"mounts": 2913, "pod_cgroups": 3113})
    assert "2913 mounts" in text and "3113 kubepods cgroups" in text
    assert "--clean-leftovers" in text


def test_the_runner_refuses_to_record_over_leftovers(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(leftovers, "found", lambda: {"mounts": 3, "pod_cgroups": 1})
    ran = []
    monkeypatch.setattr(runner, "run_one", lambda *a, **k: ran.append(a) or {})
    out = tmp_path / "results.json"
    assert runner.main(["--only", "cli", "--out", str(out)]) == 2
    assert ran == [] and not out.exists()
    assert "3 mounts" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0 or not pathlib.Path("/sys/fs/cgroup/pids").is_dir(),
                    reason="needs root and the cgroup v1 pids hierarchy")
def test_a_killed_runs_mount_cgroup_and_process_are_found_and_cleaned():
    # A leftover of its own, named so that nothing of a parallel test is touched: clean()
    # is given only these (clean_all() would act on every pod cgroup of the machine).
    tag = uuid.uuid4().hex[:8]
    work = pathlib.Path(tempfile.mkdtemp(prefix=f"bench-lefttest-{tag}-", dir="/tmp"))
    point = work / "pods" / "p1" / "shm"
    point.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "shm", str(point)], check=True)
    root = pathlib.Path("/sys/fs/cgroup/pids")
    parent = root / f"kubepods-lefttest-{tag}"
    child = parent / "pod1"
    child.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        (child / "cgroup.procs").write_text(str(sleeper.pid))
        mounts = [m for m in leftovers.bench_mounts(
            pathlib.Path("/proc/self/mountinfo").read_text()) if m.startswith(str(work))]
        cgroups = [g for g in leftovers.pod_cgroups(root) if tag in str(g)]
        assert mounts == [str(point)]
        assert cgroups == [child, parent]  # deepest first
        leftovers.clean(mounts, cgroups)
        assert sleeper.wait(timeout=10) == -9
        assert str(point) not in pathlib.Path("/proc/self/mountinfo").read_text()
        assert not parent.exists()
    finally:
        sleeper.kill()
        subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)
        for group in (child, parent):
            if group.exists():
                group.rmdir()
        subprocess.run(["rm", "-rf", str(work)], check=False)
