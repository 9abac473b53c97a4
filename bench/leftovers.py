"""What a killed benchmark leaves behind, and the way to remove it.

A benchmark killed mid-run (a session ending, a timeout's SIGKILL) runs no cleanup: its
pods' mounts (the `shm` tmpfs of each pod under /tmp/bench-*) and their `kubepods` cgroups
stay. Every later container start pays for them, since each new mount namespace copies the
whole mount table: after one killed 1,000-pod run, 2,913 leftover mounts doubled the
fan-out floor and the pod-memory bench's run time. So the runner refuses to record while
any are left, and `python -m bench --clean-leftovers` removes them.
"""

from __future__ import annotations

import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.support import containerd, podharness  # noqa: E402

TMP_PREFIX = "/tmp/bench-"
CGROUP_ROOT = pathlib.Path("/sys/fs/cgroup")


def bench_mounts(mountinfo: str | None = None) -> list[str]:
    """Mount points under a benchmark's temporary directory, deepest first (a
    /proc/self/mountinfo text; this process's when not given)."""
    return containerd.mounts_under(TMP_PREFIX, mountinfo)


def pod_cgroups(root: pathlib.Path = CGROUP_ROOT) -> list[pathlib.Path]:
    """The `kubepods` cgroup directories of every controller, deepest first."""
    found = []
    for top, dirs, _ in os.walk(root):
        if "kubepods" in top:
            found.append(pathlib.Path(top))
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def found() -> dict[str, int]:
    """How many leftover mounts and pod cgroups there are now."""
    return {"mounts": len(bench_mounts()), "pod_cgroups": len(pod_cgroups())}


def refusal(counts: dict[str, int]) -> str:
    """Why the runner will not record, or "" when nothing is left over."""
    if not any(counts.values()):
        return ""
    return (f"{counts['mounts']} mounts under {TMP_PREFIX}* and {counts['pod_cgroups']} "
            "kubepods cgroups are left from a run that was killed; they slow every container "
            "start and would skew the figures. Remove them with "
            "`.venv/bin/python -m bench --clean-leftovers` (it kills the processes left in "
            "those cgroups), or run with --allow-leftovers to record anyway.")


def clean(mounts: list[str], cgroups: list[pathlib.Path]) -> None:
    """Kill what runs in `cgroups`, unmount `mounts`, then remove `cgroups` (both deepest
    first, as bench_mounts and pod_cgroups list them)."""
    for group in cgroups:
        try:
            podharness.kill_cgroup(str(group))
        except OSError:
            pass  # gone meanwhile: nothing left to kill
    containerd.unmount(mounts)
    for group in cgroups:  # a cgroup goes once its children and processes have
        try:
            podharness.rmdir_cgroup(str(group), timeout=1.0)
        except OSError:
            pass  # still busy: found() will count it again


def clean_all() -> dict[str, int]:
    """clean() every leftover found now; returns how many there were."""
    mounts, cgroups = bench_mounts(), pod_cgroups()
    clean(mounts, cgroups)
    return {"mounts": len(mounts), "pod_cgroups": len(cgroups)}
