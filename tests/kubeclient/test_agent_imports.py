"""What the DaemonSet agent process imports (issue 4/7: agent RSS under 50 MB). The
official `kubernetes` client (~33 MB) and the other command modules (~12 MB) must stay
out of `coral agent node` (the CLI loads only the running command's module, issue 15);
`coral --help` still lists every command."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import sys
from coral_lib import cli
from coral_lib.discovery import kubernetes
parser = cli.build_parser(["agent", "node"])
args = parser.parse_args(["agent", "node", "--config", "x.yaml"])
assert args.func.__module__ == "coral_lib.commands.agent_node", args.func
kubernetes.api_from(kubeconfig=sys.argv[1])
heavy = ("kubernetes", "urllib3", "psutil", "cryptography", "coral_lib.colony",
         "coral_lib.commands.colony", "coral_lib.commands.webhook", "coral_lib.webhook")
print(" ".join(m for m in heavy if m in sys.modules))
"""


def test_agent_node_path_imports_nothing_heavy(kubeapi):
    out = subprocess.run([sys.executable, "-c", PROBE, kubeapi.kubeconfig_path],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported by coral agent node: {out.stdout}"


def test_cli_loads_the_module_of_the_command_word():
    from coral_lib import cli

    assert cli.command_word(["agent", "node", "--config", "c"]) == "agent"
    assert cli.command_word(["-v", "agent", "node"]) == "agent"
    assert cli.command_word(["--verbose"]) is None


def test_coral_help_still_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "coral_lib.cli", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for command in ("colony", "agent", "services", "exec", "webhook", "manifests", "policy"):
        assert command in out


def test_coral_agent_node_help_and_flag_errors():
    help_out = subprocess.run([sys.executable, "-m", "coral_lib.cli", "agent", "node", "--help"],
                              capture_output=True, text=True, check=True).stdout
    assert "--kubeconfig" in help_out and "--node-name" in help_out
    env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
    bad = subprocess.run([sys.executable, "-m", "coral_lib.cli", "agent", "node"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "no node name" in bad.stderr and "NODE_NAME" in bad.stderr
