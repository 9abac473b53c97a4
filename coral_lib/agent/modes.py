"""Build the agent for its runtime mode: which discovery source and which exec backend."""

from __future__ import annotations

import logging
import os
import pathlib
import socket
from typing import TYPE_CHECKING

from coral_lib import runtime
from coral_lib.agent import context, handlers, runner, sidecar
from coral_lib.ops import base

if TYPE_CHECKING:  # at run time cfg is a config.view.Section
    from coral_lib import config

log = logging.getLogger(__name__)


class ModeError(Exception):
    """The requested mode cannot run here; the message says why."""


def detect(cfg: config.AgentConfig) -> runtime.RuntimeContext:
    """Runtime detection, with agent.runtime / CORAL_AGENT_MODE forcing a mode."""
    environ = dict(os.environ)
    if cfg.agent.runtime != "auto":
        environ["CORAL_AGENT_MODE"] = cfg.agent.runtime
    return runtime.detect(environ=environ)


def build(cfg: config.AgentConfig, *, monitor_all: bool = False,
          state_dir: pathlib.Path | None = None) -> runner.Agent:
    ctx = detect(cfg)
    if monitor_all or ctx.mode == runtime.Mode.K8S_SIDECAR:
        return _sidecar_agent(cfg, ctx, state_dir=state_dir)
    if ctx.mode == runtime.Mode.K8S_DAEMONSET:
        raise ModeError("this agent runs as a DaemonSet: start it with `coral agent node`")
    return _host_agent(cfg, ctx, state_dir=state_dir)


def _host_agent(cfg: config.AgentConfig, ctx: runtime.RuntimeContext, *,
                state_dir: pathlib.Path | None) -> runner.Agent:
    from coral_lib.discovery import host  # psutil: a sidecar never loads it
    from coral_lib.ops import local

    node = ctx.node_name or socket.gethostname()
    backend = local.LocalBackend()

    def resolve(request: base.ExecRequest) -> tuple[base.ExecBackend, base.ExecRequest]:
        if request.target.pod_name or request.target.container_name:
            raise base.Refused(
                "refused: this is a host agent; it runs commands on its host, not in pods or "
                "containers")
        return backend, request

    def discover():
        return host.candidates(host.listening_sockets(), node_name=node)

    return runner.Agent(
        cfg, discover=discover, node_name=node, state_dir=state_dir,
        handlers=handlers.Handlers(runtime=context.to_proto(ctx), resolve=resolve),
    )


def _sidecar_agent(cfg: config.AgentConfig, ctx: runtime.RuntimeContext, *,
                   state_dir: pathlib.Path | None) -> runner.Agent:
    pod = sidecar.PodIdentity.from_env(os.environ)
    if not pod.name:
        log.warning("POD_NAME is not set: services are registered without a pod name")
    scope = sidecar.SidecarScope(pod)
    agent = runner.Agent(
        cfg, discover=scope.discover, node_name=pod.node or socket.gethostname(),
        state_dir=state_dir,
        handlers=handlers.Handlers(runtime=context.to_proto(ctx), resolve=scope.resolve),
    )
    agent.deregister_on_stop = True  # the pod is going away: leave the registry
    return agent
