"""Issue 15, "A leaner agent": "load tap/trace/pty/bcc only when used".

The agent's modules (host, sidecar and DaemonSet agents) import none of the shell, tap or
trace backends until an operation needs one; the figures each lever bought are in
bench/bench_agent_levers.py. The operations themselves are exercised end to end by
tests/tap_e2e, tests/trace_e2e and the shell tests.
"""

from __future__ import annotations

import json
import subprocess
import sys

OPS = ("coral_lib.ops.tap", "coral_lib.ops.trace", "coral_lib.ops.pty_session",
       "coral_lib.ops.bpf_filter", "coral_lib.ops.pcap", "ctypes", "termios", "bcc")

PROBE = """
import json, sys
from coral_lib import cli
for argv in (["agent", "start"], ["agent", "node"]):
    cli.build_parser(argv).parse_args(argv)
import coral_lib.agent.modes, coral_lib.agent.node, coral_lib.agent.runner
import coral_lib.agent.session, coral_lib.agent.shells, coral_lib.agent.taps
print(json.dumps([m for m in json.loads(sys.argv[1]) if m in sys.modules]))
"""


def test_agent_modules_load_no_shell_tap_or_trace_backend():
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(OPS)], capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout) == []


def test_each_backend_loads_when_its_operation_runs():
    """The lazy imports resolve: the names the handlers use exist in the backends."""
    code = ("from coral_lib.agent import handlers; from coral_lib.ops import pty_session, "
            "tap, trace; assert pty_session.PtySession.spawn and tap.capture and trace.run "
            "and trace.available; print(handlers.trace_available.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "trace_available"


def test_agent_verbs_parse_without_the_colony_client():
    """`coral agent node|start` parse without gRPC, the colony client (the agent's own
    modules load gRPC when they run), pydantic or cryptography."""
    code = ("import json, sys; from coral_lib import cli\n"
            "for argv in (['agent', 'node'], ['agent', 'start']):\n"
            "    assert cli.build_parser(argv).parse_args(argv).func\n"
            "print(json.dumps([m for m in ('grpc', 'coral_lib.client', 'pydantic', "
            "'cryptography', 'coral_lib.config') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == []
