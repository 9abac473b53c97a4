"""Fixtures shared by every test directory.

`colony`: a real colony process on loopback TLS (tests/support/coral_procs.Colony), stopped
after the test. A directory changes how it starts by overriding `colony_args`, e.g. the
DaemonSet and sidecar tests point it at their API server fixture for TokenReview.
"""

from __future__ import annotations

import pytest

from tests.support import coral_procs


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: absent without the plugin
def pytest_xdist_make_scheduler(config, log):
    """Parallel runs (tools/test.sh: -n N --dist loadfile) schedule whole files, and whole
    directories that share a costly session fixture (tests/support/parallel.py)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from tests.support import parallel

    return parallel.Scheduler(config, log)


@pytest.fixture
def colony_args() -> tuple[str, ...]:
    """Extra `coral colony start` arguments for the `colony` fixture."""
    return ()


@pytest.fixture
def colony(tmp_path, colony_args):
    """A real colony process (coral_procs.Colony) under tmp_path/colony."""
    colony = coral_procs.Colony(tmp_path / "colony", args=colony_args).start()
    yield colony
    colony.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session (tests/support/postgres.py)."""
    from tests.support import postgres

    why = postgres.available()
    if why:
        pytest.fail(f"PostgreSQL tests need a server: {why}")
    server = postgres.Server().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """A function name -> where a store keeps its tables: a SQLite file under tmp_path, or
    (postgresql) one fresh schema of the session's PostgreSQL server shared by every name,
    as replicas share one database. Storage tests take it to run against both backends."""
    if request.param == "sqlite":
        return lambda name: tmp_path / name
    where = request.getfixturevalue("postgres_server").fresh_dsn()
    return lambda name: where
