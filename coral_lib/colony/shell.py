"""The colony's side of an interactive shell: one target, audited, frames relayed both ways."""

from __future__ import annotations

import shlex
import threading
import time
import uuid
from collections.abc import Iterator

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.colony.v1 import colony_pb2
from coral_lib.colony import audit as audit_mod
from coral_lib.colony import auth, links
from coral_lib.colony import targets as targets_mod


def relay(*, identity: auth.Identity, target: colony_pb2.Target, first: colony_pb2.ShellFrame,
          frames: Iterator[colony_pb2.ShellFrame], op: links.Operation,
          audit: audit_mod.AuditLog, runtime: str, rule: str, is_active,
          approval_id: str = "", verb: str = "shell", provenance: str = "",
          replica: str = "") -> Iterator[agent_pb2.ShellOutput]:
    """Start the shell on the agent through `op` (an operation on its link, here or relayed
    to the replica holding it: links.open_for), pump operator input to it, yield its
    output. `replica` names this colony replica in the audit record."""
    start = agent_pb2.ShellStart()
    start.CopyFrom(first.input.start)
    start.target.CopyFrom(targets_mod.agent_target(target))
    op_key = f"shell-{uuid.uuid4().hex[:12]}"
    command = shlex.join(start.argv) or "/bin/sh"
    try:
        audit.started(op_id=op_key, requester=identity.name, verb=verb,
                      agent_id=target.agent_id, runtime=runtime, service=target.service,
                      namespace=target.namespace, pod=target.pod, provenance=provenance,
                      command=command, decision_rule=rule, approval_id=approval_id,
                      node=target.node, replica=replica)
    except audit_mod.AuditError as exc:
        op.close()
        yield agent_pb2.ShellOutput(error=f"shell not started because it could not be "
                                          f"audited: {exc}")
        return
    began, sent, code, error = time.monotonic(), 0, None, ""
    lost = False  # the agent's link dropped mid-shell: the shell was cut off
    try:
        op.send(shell=agent_pb2.ShellInput(start=start))
        threading.Thread(target=_forward, args=(frames, op), daemon=True).start()
        while code is None and not error and is_active():
            try:
                reply = op.receive(timeout=1.0)
            except TimeoutError:
                continue
            out = reply.shell if reply.WhichOneof("body") == "shell" else agent_pb2.ShellOutput(
                error=reply.error or "unexpected reply from agent")
            kind = out.WhichOneof("output")
            if kind == "entered":  # for the audit, not the operator's terminal
                targets_mod.record_entered(audit, op_id=op_key, target=target,
                                           entered=out.entered, provenance=provenance)
                continue
            sent += len(out.data)
            code = out.exit_code if kind == "exit_code" else None
            error = out.error if kind == "error" else ""
            yield out
    except links.LinkClosed as exc:
        error, lost = str(exc), True
        yield agent_pb2.ShellOutput(error=error)
    finally:
        if code is None:
            _cancel(op)
        op.close()
        audit.finished(op_id=op_key, status=_status(code, error, is_active() and not lost),
                       exit_code=code,
                       duration=time.monotonic() - began, bytes_out=sent, error=error)


def _status(code: int | None, error: str, active: bool) -> str:
    if code is None and not active:  # operator gone or agent link lost
        return "interrupted"
    if error:
        return "error"
    if code is None:
        return "error"
    return "ok" if code == 0 else "failed"


def _forward(frames: Iterator[colony_pb2.ShellFrame], op: links.Operation) -> None:
    try:
        for frame in frames:
            op.send(shell=frame.input)
    except Exception:  # the operator went away; the finally in relay cancels the shell
        pass


def _cancel(op: links.Operation) -> None:
    try:
        op.send(cancel=True)
    except links.LinkClosed:
        pass


