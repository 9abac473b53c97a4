"""The agent's local socket: the Agent gRPC service on a Unix socket (0600) on its machine.

`coral agent status` asks it for the runtime context; in a pod it is how a user inside the
pod reaches the agent without going through the colony.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib

import grpc

from coral_lib._proto.coral.agent.v1 import agent_pb2_grpc
from coral_lib.agent import handlers as handlers_mod


def default_socket() -> pathlib.Path:
    base = "/run/coral" if os.geteuid() == 0 else str(pathlib.Path.home() / ".coral")
    return pathlib.Path(os.environ.get("CORAL_AGENT_SOCKET", f"{base}/agent.sock"))


class AgentServicer(agent_pb2_grpc.AgentServicer):
    def __init__(self, handlers: handlers_mod.Handlers) -> None:
        self.handlers = handlers

    def GetRuntimeContext(self, request, context):
        return self.handlers.runtime

    def Exec(self, request, context):
        return self.handlers.exec(request)


def serve(handlers: handlers_mod.Handlers, path: pathlib.Path) -> grpc.Server:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="local"))
    agent_pb2_grpc.add_AgentServicer_to_server(AgentServicer(handlers), server)
    old = os.umask(0o077)  # the socket grants exec: owner only
    try:
        server.add_insecure_port(f"unix://{path}")
        server.start()
    finally:
        os.umask(old)
    return server


def runtime_context(path: pathlib.Path, *, timeout: float = 5.0):
    from coral_lib._proto.coral.agent.v1 import agent_pb2
    with grpc.insecure_channel(f"unix://{path}") as chan:
        return agent_pb2_grpc.AgentStub(chan).GetRuntimeContext(
            agent_pb2.GetRuntimeContextRequest(), timeout=timeout)
