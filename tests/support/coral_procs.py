"""Start real colony and agent processes on loopback for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import yaml

CORAL = [sys.executable, "-m", "coral_lib.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def coral(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
          check: bool = False) -> subprocess.CompletedProcess:
    """Run the `coral` command as a user would, capturing text output."""
    return subprocess.run([*CORAL, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=check)


def stop_process(proc: subprocess.Popen | None, *, sig: int = signal.SIGTERM,
                 timeout: float = 10.0) -> None:
    """Signal a child we started, wait for it, and kill it if it does not end in time."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(predicate, *, timeout: float = 20.0, interval: float = 0.1, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")


class Colony:
    """A real `coral colony start` process; `args` are extra flags for it. `command` and
    `env` run another build of coral (tests/skew: the previous release)."""

    command: tuple[str, ...] = tuple(CORAL)
    env: dict[str, str] | None = None

    def __init__(self, data_dir: pathlib.Path, *, port: int | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.data_dir, self.port, self.args = data_dir, port or free_port(), tuple(args)
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def colony_id(self) -> str:
        return (self.data_dir / "colony.id").read_text().strip()

    @property
    def operator_env(self) -> dict[str, str]:
        return {"CORAL_COLONY_ADDRESS": self.address,
                "CORAL_CA_FILE": str(self.data_dir / "ca.crt"),
                "CORAL_TOKEN_FILE": str(self.data_dir / "admin.token")}

    def start(self) -> Colony:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.command, "colony", "start", "--data-dir", str(self.data_dir), "--listen",
             self.address, *self.args],
            stdout=log, stderr=subprocess.STDOUT, env=self.env,
        )
        wait_for(self._ready, what=f"colony on {self.address}")
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"colony exited: {self.log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
            return (self.data_dir / "admin.token").exists()
        return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig=sig)

    def client(self):
        from coral_lib import client
        token = (self.data_dir / "admin.token").read_text().strip()
        return client.connect(self.address, ca_file=str(self.data_dir / "ca.crt"), token=token)


class Agent:
    """A real `coral agent start` process. Its identity: a one-time join token created with
    `coral colony join-token create` (the colony must be running) on its first start, or
    `join_token` as given ("" = none); later starts reuse the certificate in its state dir.
    `command` and `env` as for Colony."""

    command: tuple[str, ...] = tuple(CORAL)
    env: dict[str, str] | None = None

    def __init__(self, work_dir: pathlib.Path, colony: Colony, *, agent_id: str,
                 services: list[dict] | None = None, join_token: str | None = None,
                 extra: dict | None = None, args: tuple[str, ...] = ()) -> None:
        self.work_dir, self.colony, self.agent_id = work_dir, colony, agent_id
        self.args = tuple(args)  # extra `coral agent start` flags
        self.config_path = work_dir / f"{agent_id}.yaml"
        self.log_path = work_dir / f"{agent_id}.log"
        self.socket_path = work_dir / f"{agent_id}.sock"
        self.state_dir = work_dir / f"{agent_id}-state"
        self.token_path = work_dir / f"{agent_id}.join-token"
        self.join_token = join_token
        body = {
            "agent": {"id": agent_id},
            "colony": {"address": colony.address, "caFile": str(colony.data_dir / "ca.crt"),
                       "id": colony.colony_id, "joinTokenFile": str(self.token_path)},
            "discovery": {"host": {"pollInterval": "1s"}},
            "services": services or [],
            **(extra or {}),
        }
        work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(body))
        self.proc: subprocess.Popen | None = None

    @property
    def cert_path(self) -> pathlib.Path:
        return self.state_dir / f"{self.agent_id}.crt"

    def create_join_token(self, *, ttl: str = "10m") -> str:
        run = coral("colony", "join-token", "create", "--agent-id", self.agent_id, "--ttl", ttl,
                    env=self.colony.operator_env)
        if run.returncode != 0:
            raise RuntimeError(f"join-token create for {self.agent_id}: {run.stderr}")
        return run.stdout.strip()

    def start(self) -> Agent:
        if not self.cert_path.exists():
            token = self.join_token if self.join_token is not None else self.create_join_token()
            self.token_path.write_text(token + "\n")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.command, "agent", "start", "--config", str(self.config_path),
             "--state-dir", str(self.state_dir), "--socket", str(self.socket_path), *self.args],
            stdout=log, stderr=subprocess.STDOUT, env=self.env,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.proc)


def wait_registered(colony: Colony, agent_ids: list[str], *, timeout: float = 30.0) -> None:
    def ready() -> bool:
        try:
            with colony.client() as c:
                agents = {a["agent_id"]: a for a in c.list_agents()}
        except Exception:
            return False
        return all(agents.get(a, {}).get("connected") for a in agent_ids)
    wait_for(ready, timeout=timeout, what=f"agents {agent_ids} registered and linked")
