"""Disk full / read-only data directory for the colony (issue 7 resilience): a clear error,
no corruption of what was already stored (registry and audit chain verify after), and a
running colony keeps answering reads.

Real mounts: the colony's data directory is a small tmpfs that the test fills to the last
byte; the read-only case is a read-only bind mount of a data directory that already holds
a registry and an audit log.
"""

from __future__ import annotations

import os
import pathlib
import sqlite3
import subprocess
import tempfile

import grpc
import pytest

from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import audit
from tests.resilience.conftest import read_only_bind
from tests.support import agent_identity, coral_procs

_AGENTS: dict[tuple[str, str], agent_identity.MeshAgent] = {}


def enroll(colony: coral_procs.Colony, *agent_ids: str) -> None:
    """Join these agent ids now (a join writes to the data directory: do it before the
    directory fills up or turns read-only)."""
    for agent_id in agent_ids:
        agent = agent_identity.MeshAgent(colony, pathlib.Path(tempfile.mkdtemp()), agent_id)
        agent.join()
        _AGENTS[colony.address, agent_id] = agent


def register(colony: coral_procs.Colony, agent_id: str,
             services: int) -> mesh_pb2.RegisterResponse:
    """Register an agent with `services` services over the real Mesh protocol (TLS), with
    the identity enroll() obtained for it."""
    return _AGENTS[colony.address, agent_id].stub.Register(mesh_pb2.RegisterRequest(
        node_name="node-1", services=[
            mesh_pb2.ServiceInfo(component_name=f"{agent_id}-svc-{i}", port=8000 + i,
                                 labels={"pad": "x" * 200},
                                 provenance=mesh_pb2.SERVICE_PROVENANCE_EXPLICIT)
            for i in range(services)]), timeout=30)


def stored(colony: coral_procs.Colony) -> set[tuple[str, str, int]]:
    with colony.client() as c:
        return {(s["agent"], s["component_name"], s["port"]) for s in c.list_services()}


def fill_disk(directory) -> int:
    """Write a filler file until the filesystem is full; return bytes written."""
    written = 0
    try:
        with open(directory / "filler", "wb") as fh:
            while True:
                written += fh.write(b"\0" * 4096)
                fh.flush()
    except OSError:
        pass
    return written


def offline_checks(data_dir) -> None:
    """After the colony stopped: SQLite integrity of every store and the audit chain."""
    for name in ("colony.db", "audit.db"):
        with sqlite3.connect(f"file:{data_dir / name}?mode=ro", uri=True) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", name
    log = audit.AuditLog(data_dir / "audit.db")
    try:
        result = log.verify()
        assert result.ok and result.checked > 0, result
    finally:
        log.close()


def test_disk_full_colony_clear_error_no_corruption_keeps_answering_reads(tmpfs_factory):
    """Issue 7 resilience: disk full under the colony's data directory."""
    mount = tmpfs_factory("32m", "full")
    colony = coral_procs.Colony(mount / "colony").start()
    try:
        enroll(colony, *[f"before-{i}" for i in range(5)], *[f"during-{i}" for i in range(20)],
               "after")
        for i in range(5):
            assert register(colony, f"before-{i}", 10).accepted
        before = stored(colony)
        with colony.client() as c:
            assert c.verify_audit()["ok"]
        assert fill_disk(mount) > 0
        failures = []
        for i in range(20):  # a registration writes registry rows and 30 audit records
            try:
                register(colony, f"during-{i}", 30)
            except grpc.RpcError as exc:
                failures.append(exc)
        assert failures, "the disk never filled up"
        details = failures[-1].details() or ""
        assert "full" in details, f"not a clear disk-full error: {details!r}"
        assert "Exception calling application" not in details, details
        assert colony.proc.poll() is None, "the colony died when its disk filled up"
        assert before <= stored(colony), "services stored before the disk filled are gone"
        with colony.client() as c:
            assert c.verify_audit()["ok"]
            assert c.list_agents()
        os.unlink(mount / "filler")
        assert register(colony, "after", 5).accepted, "the colony did not recover"
        assert ("after", "after-svc-0", 8000) in stored(colony)
    finally:
        colony.stop()
    offline_checks(colony.data_dir)


def test_read_only_data_dir_colony_clear_error_nothing_changed(tmp_path):
    """Issue 7 resilience: the colony's data directory is read-only (bind mount, ro)."""
    colony = coral_procs.Colony(tmp_path / "data" / "colony").start()
    try:
        enroll(colony, "stored-1", "new-agent")
        assert register(colony, "stored-1", 10).accepted
        before = stored(colony)
    finally:
        colony.stop()
    snapshot = {p.name: p.read_bytes() for p in colony.data_dir.iterdir() if p.is_file()}
    view = tmp_path / "ro" / "colony"  # the colony's log goes next to it, writable
    with read_only_bind(colony.data_dir, view):
        ro = coral_procs.Colony(view, port=coral_procs.free_port())
        enroll_as = _AGENTS[colony.address, "new-agent"]
        _AGENTS[ro.address, "new-agent"] = agent_identity.MeshAgent(
            ro, enroll_as.holder.cert_path.parent, "new-agent")
        _AGENTS[ro.address, "new-agent"].holder.load()
        try:
            ro.start()
        except RuntimeError as exc:  # it refused to start: the reason must be clear
            message = str(exc)
            assert "read-only" in message or "readonly" in message, message[-1500:]
            assert "Traceback" not in message, message[-3000:]
        else:  # it started: reads work, writes are refused clearly
            try:
                assert stored(ro) == before
                with pytest.raises(grpc.RpcError) as refused:
                    register(ro, "new-agent", 3)
                assert "read-only" in (refused.value.details() or ""), refused.value.details()
            finally:
                ro.stop()
    after = {p.name: p.read_bytes() for p in colony.data_dir.iterdir() if p.is_file()}
    for name in ("colony.db", "audit.db", "identity.db"):
        assert after.get(name) == snapshot.get(name), f"{name} changed through a read-only mount"
    offline_checks(colony.data_dir)
    subprocess.run(["sync"], check=False)
