"""Runs INSIDE the sidecar agent container (from the Coral image, default capabilities):
the sidecar's own code paths -- runtime detection, discovery, Handlers.exec and
Handlers.shell -- into each app container named on the command line. Prints JSON."""

import json
import os
import socket
import sys
import threading
import time

from coral_lib import capabilities, runtime
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib.agent import context, handlers, sidecar
from coral_lib.ops import base, chroot, nsenter

SCRIPT = ("id -u; cat /tmp/marker; echo cwd=$(pwd) env=$APP_ONLY extra=$EXTRA; "
          "grep CapEff /proc/self/status")


def shell(h: handlers.Handlers, name: str) -> dict:
    session = h.shell(agent_pb2.ShellStart(
        argv=["/bin/sh"], target=agent_pb2.ExecTarget(container_name=name)))
    session.write(f"{SCRIPT}; exit 7\n".encode())
    out, deadline = b"", time.monotonic() + 20
    while not session.eof and time.monotonic() < deadline:
        out += session.read(0.2)
    return {"rc": session.close(), "output": out.decode(errors="replace")}


def tap(h: handlers.Handlers, name: str) -> dict:
    """Tap "into" an app container: the pod's network namespace, the sidecar's own."""
    stop, got = threading.Event(), []

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not stop.is_set():
                s.sendto(b"coral-tap-probe", ("127.0.0.1", 40999))
                time.sleep(0.05)

    threading.Thread(target=send, daemon=True).start()
    try:
        summary = h.tap(agent_pb2.TapRequest(
            target=agent_pb2.ExecTarget(container_name=name), filter="udp port 40999",
            duration_seconds=10, max_packets=3), on_packet=got.append, stop=threading.Event())
    finally:
        stop.set()
    return {"packets": summary.packets, "reason": summary.reason,
            "payload_seen": any(b"coral-tap-probe" in p.data for p in got)}


def main() -> None:
    ctx = runtime.detect()
    scope = sidecar.SidecarScope(sidecar.PodIdentity.from_env(os.environ))
    h = handlers.Handlers(runtime=context.to_proto(ctx), resolve=scope.resolve)
    report = {
        "cap_eff": capabilities.read_mask(),
        "uid": os.getuid(),
        "runtime": ctx.to_dict(),
        "containers": {c.name: c.main_pid for c in scope.containers()},
        "exec": {}, "shell": {}, "nsenter": {}, "unnamed": {}, "tap": {},
    }
    for name in sys.argv[1:]:
        reply = h.exec(agent_pb2.ExecRequest(
            argv=[SCRIPT], shell=True, env={"EXTRA": "from-request"},
            target=agent_pb2.ExecTarget(container_name=name)))
        report["exec"][name] = {"rc": reply.exit_code, "stdout": reply.stdout.decode(),
                                "stderr": reply.stderr.decode(), "error": reply.error}
        if not reply.error:
            report["shell"][name] = shell(h, name)
            report["tap"][name] = tap(h, name)
        # the old path: setns into the app's mount namespace, refused with these caps
        try:
            nsenter.NsenterBackend().run(base.ExecRequest(
                argv=["true"], target=base.ExecTarget(pid=report["containers"][name])))
            report["nsenter"][name] = "ok"
        except base.OperationError as exc:
            report["nsenter"][name] = str(exc)
    for c in scope.containers():  # apps whose name the sidecar cannot read: try by pid
        if c.name not in sys.argv[1:]:
            try:
                result = chroot.ChrootBackend().run(base.ExecRequest(
                    argv=["cat", "/tmp/marker"], target=base.ExecTarget(pid=c.main_pid)))
                report["unnamed"][c.name] = result.stdout.decode()
            except base.OperationError as exc:
                report["unnamed"][c.name] = str(exc)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
