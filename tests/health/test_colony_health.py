"""Issue 13, Health: the colony's /healthz and /readyz on its --metrics-listen port.

Acceptance: "Colony /healthz and /readyz (storage writable, audit sink writable,
listening)". The failures are real: the data directory and the checkpoint sink sit on
their own small tmpfs mounts, remounted read-only or filled up while the colony runs
(this needs root, as the rest of the suite does: CAP_SYS_ADMIN for mount).

Shortcut, named: Linux refuses `mount -o remount,ro` of a file system with files open
for writing (the colony's SQLite databases), which a failing disk's forced remount
(errors=remount-ro) does not ask. The data directory test therefore stacks a read-only
bind mount of the directory on itself: every new open through the path is read-only,
as after a forced remount, while the database files already open stay writable.
The checkpoint sink is opened per write, so its tmpfs is remounted read-only for real.
"""

from __future__ import annotations

import contextlib
import pathlib
import socket
import subprocess

from coral_lib.colony import health
from tests.support import coral_procs, scrape


@contextlib.contextmanager
def tmpfs(path: pathlib.Path, *, size: str = "16m"):
    """A private tmpfs mounted at `path` for the test, unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)]).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: pathlib.Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


@contextlib.contextmanager
def read_only_bind(path: pathlib.Path):
    """A read-only bind mount of `path` on itself (see the module docstring), removed after."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


@contextlib.contextmanager
def colony_with_health(data_dir: pathlib.Path):
    port = coral_procs.free_port()
    colony = coral_procs.Colony(data_dir, args=("--metrics-listen", f"127.0.0.1:{port}"))
    colony.start()
    try:
        coral_procs.wait_for(lambda: scrape.get(port, "/readyz")[0] == 200, what="/readyz 200")
        yield colony, port
    finally:
        colony.stop()


def test_readyz_fails_when_storage_unwritable(tmp_path):
    with tmpfs(tmp_path / "colony") as data_dir, colony_with_health(data_dir) as (_, port):
        with read_only_bind(data_dir):
            status, body = scrape.get(port, "/readyz")
            assert status == 503
            assert f"storage: the data directory {data_dir} is not writable" in body
            assert "Read-only file system" in body
            assert scrape.get(port, "/healthz") == (200, "ok\n"), "unready, still alive"
        assert scrape.get(port, "/readyz") == (200, "ok\n")


def test_readyz_fails_when_audit_sink_unwritable(tmp_path):
    """The checkpoint sink defaults to <dataDir>-checkpoints, outside the data dir."""
    with tmpfs(tmp_path / "colony-checkpoints") as sink, \
            colony_with_health(tmp_path / "colony") as (_, port):
        remount(sink, "ro")
        try:
            status, body = scrape.get(port, "/readyz")
            assert status == 503
            assert f"audit sink: the checkpoint directory {sink} is not writable" in body
            assert "storage" not in body, "only the sink is named"
        finally:
            remount(sink, "rw")
        assert scrape.get(port, "/readyz")[0] == 200


def test_readyz_fails_when_the_data_disk_is_full(tmp_path):
    with tmpfs(tmp_path / "colony", size="8m") as data_dir, \
            colony_with_health(data_dir) as (_, port):
        filler = data_dir / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        try:
            status, body = scrape.get(port, "/readyz")
            assert status == 503 and "No space left on device" in body
        finally:
            filler.unlink()
        assert scrape.get(port, "/readyz")[0] == 200
        assert not [p.name for p in data_dir.iterdir() if p.name.startswith(".readyz")], \
            "the probe leaves no file behind"


def test_readyz_names_a_grpc_port_that_does_not_accept():
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        problem = health.accepting("127.0.0.1", port)
    assert problem.startswith(f"the gRPC port 127.0.0.1:{port} does not accept connections")
    assert health.problems(data_dir="/", sink_dir=None, host="127.0.0.1", port=port,
                           serving=False) == ["the colony is not serving (starting or stopping)"]


def test_health_listener_serves_only_its_paths(tmp_path):
    with colony_with_health(tmp_path / "colony") as (_, port):
        status, body = scrape.get(port, "/registry")
        assert status == 404 and "/metrics, /healthz, /readyz" in body
