"""Runs inside a harness pod as the agent would (own container, the pod's /proc) and
prints one JSON answer: `detect SA_DIR`, `scan`, or `exec CONTAINER CMD...`."""

from __future__ import annotations

import dataclasses
import json
import sys

from coral_lib import runtime
from coral_lib.discovery import procfs
from coral_lib.ops import base, nsenter


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
    raise SystemExit(f"unknown probe command {argv[0]!r}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
