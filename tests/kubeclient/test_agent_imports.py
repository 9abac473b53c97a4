"""What the DaemonSet agent process imports (issue 4/7: agent RSS under 50 MB). The
official `kubernetes` client (~33 MB) and the other command modules (~12 MB) must stay
out of `coral agent node` (the CLI loads only the running command's module, issue 15);
`coral --help` still lists every command."""

from __future__ import annotations

import json
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


NODE_BUILD_PROBE = """
import json, sys
from coral_lib import cli
from coral_lib.commands import agent_node
argv = ["agent", "node", "--config", sys.argv[1], "--kubeconfig", sys.argv[2],
        "--node-name", "node-a", "--override-file", sys.argv[3], "--mode", "active"]
args = cli.build_parser(argv).parse_args(argv)
from coral_lib.config import view
cfg = view.load_agent_config(args.config)
from coral_lib.agent import node
agent = node.build(cfg, agent_node.options(args))
assert agent.cfg.agent.mode == "active" and len(agent.rules) == 2, agent.rules
print(json.dumps([m for m in json.loads(sys.argv[4]) if m in sys.modules]))
"""


def test_daemonset_agent_built_holds_no_pydantic(kubeapi, tmp_path):
    """Issue 15, "A leaner agent": "keep heavy validation off the agent's run-time path".
    `coral agent node`'s steps up to a built agent (config and override file validated in
    forked children, coral_lib.config.view) leave pydantic and the config models out of
    the process. yaml is allowed here only because this test hands the agent a kubeconfig;
    in its pod the agent reads the in-cluster credentials and loads no YAML."""
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("overrides: [{selector: {namespace: shop}, service: {type: http}}]\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {selector: {podLabel: app=api}, service: {name: api}}\n")
    never = ["pydantic", "pydantic_core", "coral_lib.config.models", "coral_lib.config.loader"]
    out = subprocess.run([sys.executable, "-c", NODE_BUILD_PROBE, str(cfg),
                          kubeapi.kubeconfig_path, str(rules), json.dumps(never)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
