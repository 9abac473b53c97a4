"""Issue 15, "A quicker CLI": a single-target `coral exec` within 300 ms. Most of its wall
time was a wait: connecting with grpc.channel_ready_future left a 0.2 s connectivity poll
in flight, and closing the channel waited it out on every command. client.connect now
waits for the TLS connection with one call the colony answers without running anything
(client.wait_connected). Timings are measured by bench/bench_cli.py, never asserted here."""

from __future__ import annotations

import threading

import pytest

from coral_lib import client, errors
from coral_lib.operator import connect
from tests.support import coral_procs


@pytest.fixture
def running_colony(tmp_path):
    colony = coral_procs.Colony(tmp_path / "colony").start()
    yield colony
    colony.stop()


def _connect(colony: coral_procs.Colony, **kw) -> client.Client:
    return connect.connect(address=colony.address, ca_file=str(colony.data_dir / "ca.crt"),
                           **kw)


def test_connecting_leaves_no_poll_for_close_to_wait_out(running_colony):
    """No thread outlives connect(): nothing polls the channel's state, so close() has
    nothing to wait for (grpc.channel_ready_future leaves a polling thread behind)."""
    token = (running_colony.data_dir / "admin.token").read_text().strip()
    before = set(threading.enumerate())
    colony = _connect(running_colony, token=token)
    try:
        assert set(threading.enumerate()) - before == set()
        assert colony.whoami() == "admin"  # the probed connection serves the next call
    finally:
        colony.close()


def test_the_probe_runs_no_handler_an_attacker_learns_nothing(running_colony):
    """Playing the attacker: a caller with a bad token gets a connection (the probe proves
    TLS only), but the probe is answered before authentication, so it is neither a login
    nor audited; the first real call is refused and audited as a failed login."""
    token = (running_colony.data_dir / "admin.token").read_text().strip()
    for _ in range(3):
        _connect(running_colony, token="not-a-token").close()
    with _connect(running_colony, token=token) as admin:
        assert not [r for r in admin.audit(kind="refused")
                    if r.get("rule") == "authentication"]
    with _connect(running_colony, token="not-a-token") as intruder, \
            pytest.raises(errors.Unauthenticated):
        intruder.whoami()
    with _connect(running_colony, token=token) as admin:
        failed = [r for r in admin.audit(kind="refused") if r.get("rule") == "authentication"]
    assert len(failed) == 1 and "unknown operator token" in failed[0]["reason"]


def test_no_colony_is_unreachable_after_the_connect_timeout(tmp_path, running_colony):
    """The probe keeps CORAL_CONNECT_TIMEOUT's meaning: wait that long for a TLS
    connection, then Unreachable naming the address and the wait."""
    dead = f"127.0.0.1:{coral_procs.free_port()}"
    with pytest.raises(errors.Unreachable) as refused:
        connect.connect(address=dead, ca_file=str(running_colony.data_dir / "ca.crt"),
                        token="t", connect_timeout=0.5)
    assert f"colony unreachable at {dead}" in str(refused.value)
    assert "within 0.5s" in str(refused.value)
