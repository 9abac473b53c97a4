"""The detected runtime context as the protobuf message the agent reports."""

from __future__ import annotations

import socket

from coral_lib import runtime
from coral_lib._proto.coral.agent.v1 import agent_pb2


def _capability(available: bool, reason: str) -> agent_pb2.Capability:
    return agent_pb2.Capability(available=available, reason="" if available else reason)


def to_proto(ctx: runtime.RuntimeContext) -> agent_pb2.RuntimeContext:
    return agent_pb2.RuntimeContext(
        mode=int(ctx.mode), visibility=ctx.visibility.value,
        exec_backend=ctx.exec_backend.value,
        can_exec=_capability(ctx.can_exec, ctx.exec_reason),
        can_shell=_capability(ctx.can_shell, ctx.shell_reason),
        can_tap=_capability(ctx.can_tap, ctx.tap_reason),
        can_trace=_capability(ctx.can_trace, ctx.trace_reason),
        warnings=list(ctx.warnings), pod_name=ctx.pod_name, pod_namespace=ctx.pod_namespace,
        pod_uid=ctx.pod_uid, node_name=ctx.node_name, hostname=socket.gethostname(),
        details={
            "capabilities": ",".join(ctx.capabilities), "cri_socket": ctx.cri_socket,
            "cgroup_version": str(ctx.cgroup_version), "container_id": ctx.container_id,
            "forced": str(ctx.forced).lower(),
        },
    )


def mode_name(ctx: agent_pb2.RuntimeContext) -> str:
    return agent_pb2.RuntimeMode.Name(ctx.mode).removeprefix("RUNTIME_MODE_").lower()
