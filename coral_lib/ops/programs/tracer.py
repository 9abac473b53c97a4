"""Tracer run by coral_lib/ops/trace.py under /usr/bin/python3 (which has bcc).

argv[1] is a JSON config: text (the BPF C program), cflags, kind (exec|connect), pidns,
duration. Writes one JSON object per line: {"type": "ready"}, the events, then
{"type": "end", "lost": N, "reason": "stopped"|"duration"}. Runs as `python3 -c <this>`,
so it is a script, not a module of coral_lib.
"""

import ipaddress
import json
import signal
import sys
import time

from bcc import BPF

cfg = json.loads(sys.argv[1])
b = BPF(text=cfg["text"], cflags=cfg["cflags"])
lost = [0]
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def on_event(cpu, data, size):
    ev = b["events"].event(data)
    out = {"type": cfg["kind"], "ts": time.time(), "pid": ev.pid, "tid": ev.tid,
           "uid": ev.uid, "cgroup_id": ev.cgroup_id,
           "comm": bytes(ev.comm).split(b"\0")[0].decode(errors="replace")}
    if cfg["pidns"]:
        out["ns_pid"] = ev.ns_pid
    if cfg["kind"] == "exec":
        out["filename"] = bytes(ev.filename).split(b"\0")[0].decode(errors="replace")
    else:
        raw = bytes(ev.addr)
        addr = ipaddress.ip_address(raw[:4] if ev.family == 2 else raw)
        out.update(family="inet" if ev.family == 2 else "inet6", addr=str(addr), port=ev.port)
    emit(out)


def on_lost(count):
    lost[0] += count


b["events"].open_perf_buffer(on_event, page_cnt=64, lost_cb=on_lost)
emit({"type": "ready"})
deadline = time.monotonic() + cfg["duration"]
while not stopping and time.monotonic() < deadline:
    b.perf_buffer_poll(timeout=100)
emit({"type": "end", "lost": lost[0], "reason": "stopped" if stopping else "duration"})
