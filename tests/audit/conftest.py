"""Fixtures for the audit log tests: a prebuilt 1,000-record log and small real mounts."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from coral_lib.colony import audit

RECORDS = 1000


def _fill(log: audit.AuditLog, count: int) -> None:
    """A realistic mix: started/finished pairs, refusals and discovery events."""
    for i in range(1, count + 1):
        if i % 10 == 0:
            log.refused(requester="mallory", verb="shell", target=f"agent-{i % 7}",
                        command="sh", reason="no rule", rule="")
        elif i % 10 == 5:
            log.discovery({"agent_id": f"agent-{i % 7}", "added": [f"ns/p/c/svc{i}:{i}"],
                           "removed": [], "changed": [], "overridden": [], "services": 1,
                           "digest": f"sha256:{i:064x}"})
        elif i % 2:
            log.started(op_id=f"op-{i}", requester="alice", verb="exec",
                        agent_id=f"agent-{i % 7}", runtime="host", service="api",
                        namespace="payments", pod="", provenance="EXPLICIT",
                        command=f"echo {i}")
        else:
            log.finished(op_id=f"op-{i - 1}", status="ok", exit_code=0, duration=0.01,
                         bytes_out=i)


@pytest.fixture(scope="session")
def log_1000(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Path of a closed audit log holding exactly 1,000 records (built once per run)."""
    path = tmp_path_factory.mktemp("audit1000") / "audit.db"
    log = audit.AuditLog(path)
    _fill(log, RECORDS)
    assert log.head()[0] == RECORDS
    log.close()
    return path


@pytest.fixture
def scratch_dir(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A directory in memory (/dev/shm) when there is one: thousands of scratch copies."""
    shm = pathlib.Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        yield tmp_path
        return
    path = pathlib.Path(tempfile.mkdtemp(prefix="coral-audit-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fill():
    return _fill


@contextlib.contextmanager
def _mounted(args: list[str], target: pathlib.Path) -> Iterator[pathlib.Path]:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *args, str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


@pytest.fixture
def small_tmpfs(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A real 256 KiB tmpfs: the disk fills up after a few records."""
    with _mounted(["-t", "tmpfs", "-o", "size=256k", "coral-audit-test"], tmp_path / "full") as mnt:
        yield mnt


@pytest.fixture
def read_only_view(tmp_path: pathlib.Path) -> Iterator[tuple[pathlib.Path, pathlib.Path]]:
    """(writable dir, read-only bind mount of it): root cannot write through the view."""
    source = tmp_path / "data"
    source.mkdir()
    view = tmp_path / "ro"
    with _mounted(["--bind", str(source)], view):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        yield source, view
