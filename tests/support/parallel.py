"""How tools/test.sh spreads the suite over pytest-xdist workers (`-n N --dist loadfile`,
taken over by tests/conftest.py's pytest_xdist_make_scheduler).

A work unit is a test file, so its module fixtures are set up once (as with loadfile), except
SHARED_DIRECTORIES: each is one unit, because its tests share a session or package fixture
that is costly to start, and a second worker would start it again. The longest units start
first (SLOW_FIRST) so none of them is left alone at the end of the run.

Why not xdist_group marks and --dist loadgroup: pytest-xdist 3.8 appends the group to
`item._nodeid`, which pytest 9.2 no longer reads (node ids live in `item._id`), so the marks
are silently ignored. A scheduler has no such dependency.

Shared things outside tmp_path are locked (tests/support/locks.py: in-place builds of the
checkout, the image, the hosts' rootfs); everything else a test starts takes free ports and
unique names. A worker's tmp_path is one directory deeper (popen-gwN), so tools/test.sh
passes a short --basetemp: containerd refuses unix socket paths over 104 bytes. Run by hand
as `pytest -n 3 --dist loadfile --basetemp $(mktemp -d /tmp/ctest.XXXXXX) tests/...`.
"""

from __future__ import annotations

from collections import OrderedDict

from xdist.scheduler import LoadFileScheduling

TESTS = "tests/"

SHARED_DIRECTORIES = {  # directory under tests/ -> what its tests share
    "hosts": "one nspawn fleet of 3 systemd hosts, booted and deployed once per session",
    "kube_e2e": "one cluster (containerd, API server, pod runners, the image) per session",
    "podrunner": "one containerd with pod networking, an API server and 2 pod runners",
    "cri": "one private containerd and its session pods",
    "ansible_fleet": "the package fixture: API server, colony, pods and agents",
    "ansible_surface": "the package fixture: colony with mTLS and its agents",
}

# Units that take the longest (summed test durations in full parallel runs: 150-900 s
# each on a loaded machine), started before all others.
SLOW_FIRST = (
    "tests/hosts",
    "tests/kube_e2e",
    "tests/ansible/test_host_mode.py",
    "tests/awx/test_awx_job.py",
    "tests/ansible/test_colony_replicas.py",
    "tests/ansible_k8s/test_rollout.py",
    "tests/ansible_surface",
    "tests/ansible/test_molecule.py",
    "tests/image/test_reproducible.py",
    "tests/integration/test_fleet_exec.py",
    "tests/ansible_k8s/test_molecule.py",
    "tests/ansible_k8s/test_deploy.py",
    "tests/ansible_fleet",
    "tests/resilience/test_webhook_fuzz.py",
)


def unit_of(nodeid: str) -> str:
    """The work unit of a test: its SHARED_DIRECTORIES directory, else its file."""
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    if len(parts) > 2 and parts[0] + "/" == TESTS and parts[1] in SHARED_DIRECTORIES:
        return f"{parts[0]}/{parts[1]}"
    return path


def start_rank(unit: str) -> int:
    """Lower starts earlier: SLOW_FIRST units in that order, then all others."""
    return SLOW_FIRST.index(unit) if unit in SLOW_FIRST else len(SLOW_FIRST)


class _SlowFirstQueue(OrderedDict):
    """xdist's work queue (unit -> its tests); taking the next unit takes the lowest
    start_rank, and among equals the first in collection order."""

    def popitem(self, last: bool = True):
        if last:
            return super().popitem(last=True)
        unit = min(self, key=start_rank)  # min keeps the first of equal ranks
        return unit, self.pop(unit)


class Scheduler(LoadFileScheduling):
    def __init__(self, config, log=None) -> None:
        super().__init__(config, log)
        self.workqueue = _SlowFirstQueue()

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)
