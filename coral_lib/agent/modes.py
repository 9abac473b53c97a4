"""Build the agent for its runtime mode: which discovery source and which exec backend."""

from __future__ import annotations

import pathlib
import socket

from coral_lib import config
from coral_lib.agent import handlers, runner
from coral_lib.discovery import host
from coral_lib.ops import base, local


class ModeError(Exception):
    """The requested mode cannot run here; the message says why."""


def build(cfg: config.AgentConfig, *, monitor_all: bool = False,
          state_dir: pathlib.Path | None = None) -> runner.Agent:
    mode = cfg.agent.runtime
    if mode in ("auto", "host"):
        return _host_agent(cfg, state_dir=state_dir)
    raise ModeError(f"agent.runtime {mode!r} is not available in this build; use host")


def _host_agent(cfg: config.AgentConfig, *, state_dir: pathlib.Path | None) -> runner.Agent:
    node = socket.gethostname()
    backend = local.LocalBackend()

    def resolve(request: base.ExecRequest) -> tuple[base.ExecBackend, base.ExecRequest]:
        if request.target.pod_name or request.target.container_name:
            raise base.OperationError(
                "this is a host agent: it runs commands on its host, not in pods or containers")
        return backend, request

    def discover():
        return host.candidates(host.listening_sockets(), node_name=node)

    return runner.Agent(
        cfg, discover=discover, node_name=node, state_dir=state_dir,
        handlers=handlers.Handlers(runtime=runner.host_runtime(), resolve=resolve),
    )
