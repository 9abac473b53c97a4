"""Runs inside a harness pod as the agent would (own container, the pod's /proc) and
prints one JSON answer: `detect SA_DIR`, `scan`, `exec CONTAINER CMD...` or
`shell CONTAINER INPUT` (an interactive sh on a PTY fed INPUT, which should exit)."""

from __future__ import annotations

import dataclasses
import json
import sys
import time

from coral_lib import runtime
from coral_lib.discovery import procfs
from coral_lib.ops import base, nsenter, pty_session


def shell(container: str, text: str) -> dict:
    target = procfs.select_container(procfs.scan(), container)
    session = pty_session.PtySession.spawn(["/bin/sh"], target_pid=target.main_pid, rows=33,
                                           cols=99)
    session.write(text.encode())
    out = b""
    deadline = time.monotonic() + 10
    while not session.eof and time.monotonic() < deadline:
        out += session.read(0.1)
    code = session.close()
    return {"output": out.decode(errors="replace"), "exit_code": code}


def main(argv: list[str]) -> dict:
    if argv[0] == "detect":
        return runtime.detect(sa_dir=argv[1], cri_sockets=[]).to_dict()
    if argv[0] == "scan":
        return {"containers": [dataclasses.asdict(c) for c in procfs.scan()]}
    if argv[0] == "exec":
        target = procfs.select_container(procfs.scan(), argv[1])
        result = nsenter.NsenterBackend().run(base.ExecRequest(
            argv=argv[2:], target=base.ExecTarget(pid=target.main_pid)))
        return {"pid": target.main_pid, "exit_code": result.exit_code,
                "stdout": result.stdout.decode(), "stderr": result.stderr.decode()}
    if argv[0] == "shell":
        return shell(argv[1], argv[2])
    raise SystemExit(f"unknown probe command {argv[0]!r}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
