"""Colony replicas on a real PostgreSQL: one data directory initialised once and copied to
each replica (as a Secret is mounted into every pod), `coral colony start --database
file:...` processes on loopback, and host agents given several colony addresses."""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
from collections.abc import Callable

import pytest

from tests.support import coral_procs


@dataclasses.dataclass
class Colonies:
    """What coral_procs.Agent needs of a colony, for a set of replicas."""

    address: str
    data_dir: pathlib.Path
    colony_id: str

    @property
    def operator_env(self) -> dict[str, str]:
        return {"CORAL_COLONY_ADDRESS": self.address,
                "CORAL_CA_FILE": str(self.data_dir / "ca.crt"),
                "CORAL_TOKEN_FILE": str(self.data_dir / "admin.token")}


class ReplicaSet:
    def __init__(self, root: pathlib.Path, dsn_file: pathlib.Path) -> None:
        self.root, self.dsn_file = root, dsn_file
        self.template = root / "template"
        coral_procs.coral("colony", "init", "--data-dir", str(self.template), check=True)
        self.replicas: list[coral_procs.Colony] = []

    def start(self, count: int, *, extra: tuple[str, ...] = (),
              prepare: Callable[[pathlib.Path], None] | None = None) -> ReplicaSet:
        """`count` more replicas r<i>, each with `extra` flags; each writes its checkpoints
        to its own sink, the default `<data dir>-checkpoints` (sink(i)). `prepare` gets each
        copied data directory before its replica starts (an attacker's swap)."""
        for index in range(len(self.replicas), len(self.replicas) + count):
            data_dir = self.root / f"r{index}"
            shutil.copytree(self.template, data_dir)
            if prepare is not None:
                prepare(data_dir)
            self.replicas.append(coral_procs.Colony(data_dir, args=(
                "--database", f"file:{self.dsn_file}", "--replica-name", f"r{index}",
                *extra)).start())
        return self

    def sink(self, index: int) -> pathlib.Path:
        return self.root / f"r{index}-checkpoints"

    def view(self, *indexes: int) -> Colonies:
        """The replicas at `indexes` (all by default) as one comma-separated address."""
        chosen = [self.replicas[i] for i in (indexes or range(len(self.replicas)))]
        return Colonies(address=",".join(c.address for c in chosen),
                        data_dir=self.template, colony_id=chosen[0].colony_id)

    def replicas_address(self, index: int) -> str:
        """Replica r<index>'s replica port (mutual TLS), as it advertises it in the table."""
        import psycopg

        with psycopg.connect(self.dsn_file.read_text().strip()) as conn:
            row = conn.execute("SELECT address FROM colony_replicas WHERE name = %s",
                               (f"r{index}",)).fetchone()
        return row[0]

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()


def new_replica_set(root: pathlib.Path, postgres_server) -> ReplicaSet:
    """A ReplicaSet (none started) on a fresh database of the session's PostgreSQL."""
    dsn_file = root / "database.dsn"
    dsn_file.write_text(str(postgres_server.fresh_dsn().secret()) + "\n")
    dsn_file.chmod(0o600)
    return ReplicaSet(root, dsn_file)


@pytest.fixture
def replica_set(tmp_path, postgres_server):
    replicas = new_replica_set(tmp_path, postgres_server)
    yield replicas
    replicas.stop()


def start_agents(work: pathlib.Path, colonies: list[Colonies], ids: list[str]
                 ) -> list[coral_procs.Agent]:
    """One host agent per id, agent i dialling colonies[i % len(colonies)]."""
    agents = []
    for index, agent_id in enumerate(ids):
        agent = coral_procs.Agent(work, colonies[index % len(colonies)], agent_id=agent_id,
                                  services=[{"name": f"svc-{agent_id}", "port": 20000 + index}])
        agents.append(agent.start())
    return agents
