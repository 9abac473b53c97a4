"""The small interface every operation backend implements."""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import threading
from collections.abc import Mapping, Sequence
from typing import Protocol

from coral_lib import errors

DEFAULT_MAX_OUTPUT = 1 << 20  # bytes per stream before output is truncated
# Whatever max_output a request asks for, an agent never returns more than this per stream:
# a reply (stdout + stderr) must stay well below the link's 256 MiB message limit, or the
# colony would drop the whole link instead of one oversized result.
HARD_MAX_OUTPUT = 32 << 20


class OperationError(errors.CoralError):
    """A user-caused or environment failure of an operation, with a message fit to show."""


class Refused(OperationError):
    """The agent refuses the target (outside its scope, a raw container id): reported as a
    refusal (the `refused` field), not as a failure of the operation."""


@dataclasses.dataclass(frozen=True)
class ExecTarget:
    """Where to run: empty fields mean "the agent's own host/process".

    A request names namespace, pod and container name only. container_id, pid and
    resolved_by are filled by the agent's resolver once it found the container itself
    (never from a request: agent/handlers.py refuses a request carrying a container id)."""

    namespace: str = ""
    pod_name: str = ""
    container_name: str = ""
    container_id: str = ""
    pid: int = 0  # a process inside the target container (nsenter backend)
    resolved_by: str = ""  # how the resolver found it: cri | pod-status | sidecar | host


@dataclasses.dataclass(frozen=True)
class ExecRequest:
    argv: Sequence[str]
    shell: bool = False  # run argv[0] as a /bin/sh -c script
    timeout: float = 30.0
    max_output: int = DEFAULT_MAX_OUTPUT
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    cwd: str = ""
    stdin: bytes = b""
    target: ExecTarget = ExecTarget()
    cancel: threading.Event | None = None  # set by the agent when the operator cancels
    # The caller enters the target's namespaces itself (shell, tap, trace, health probes),
    # so the resolver must find a process of it; a command run through CRI needs none.
    needs_pid: bool = False


@dataclasses.dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""
    duration: float = 0.0
    truncated: bool = False
    timed_out: bool = False
    error: str = ""  # set when the command could not be started at all


class ExecBackend(Protocol):
    """Runs one command to completion. Raises OperationError when it cannot start it."""

    name: str

    def run(self, request: ExecRequest) -> ExecResult: ...


def effective_argv(request: ExecRequest) -> list[str]:
    """The argv to execute: a shell only when the caller asked for one."""
    if request.shell:
        return ["/bin/sh", "-c", " ".join(request.argv)]
    return list(request.argv)


@functools.cache
def program_text(name: str) -> str:
    """A program kept as package data in coral_lib/ops/programs/ (BPF C, helper scripts):
    real files that linters and editors see, shipped in the wheel (pyproject package-data)."""
    return importlib.resources.files("coral_lib.ops").joinpath("programs", name).read_text()
