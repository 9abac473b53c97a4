"""Issue 15, "A quicker CLI": "load a subcommand's code only when it runs".

`coral --help` must import no command module and none of gRPC, pydantic or cryptography
(checked in a fresh interpreter, through sys.modules); a command loads only its own
module; every module under coral_lib/commands is reachable from the command table, and
the one-line help the table shows is the help the module registers.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

import pytest

from coral_lib import cli

COMMANDS_DIR = pathlib.Path(cli.__file__).parent / "commands"
HEAVY = ("grpc", "pydantic", "cryptography", "google.protobuf", "yaml", "psutil")

PROBE = """
import contextlib, io, json, sys
from coral_lib import cli
argv = json.loads(sys.argv[1])
with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
    cli.build_parser(argv).parse_args(argv)
heavy = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
commands = sorted(m for m in sys.modules if m.startswith("coral_lib.commands."))
print(json.dumps({"heavy": heavy, "commands": commands, "help": out.getvalue()}))
"""


def probe(argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_coral_help_imports_no_grpc_pydantic_or_cryptography():
    """`import coral_lib.cli` + `--help` does not import grpc/pydantic/cryptography."""
    seen = probe(["--help"])
    assert seen["heavy"] == []
    assert seen["commands"] == []
    for name in cli.COMMANDS:
        assert f"    {name} " in seen["help"]


def test_the_coral_command_help_lists_every_command_without_loading_them():
    out = subprocess.run([sys.executable, "-m", "coral_lib.cli", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for name, (_, helptext) in cli.COMMANDS.items():
        assert name in out and helptext in out


@pytest.mark.parametrize("argv, module", [
    (["exec", "--help"], "operator"),
    (["-v", "webhook", "certs", "--help"], "webhook"),
    (["daemon", "status", "--help"], "daemon"),
    (["policy", "check", "--help"], "policy"),
])
def test_a_command_loads_only_its_own_module(argv, module):
    seen = probe(argv)
    own = {f"coral_lib.commands.{module}", "coral_lib.commands.common",
           "coral_lib.commands.approve"}  # operator's exec prints approval prompts
    assert f"coral_lib.commands.{module}" in seen["commands"]
    assert set(seen["commands"]) <= own, seen["commands"]
    assert "--help" in seen["help"] or "usage:" in seen["help"]


def test_webhook_and_daemon_help_load_nothing_heavy():
    for argv in (["webhook", "serve", "--help"], ["daemon", "run", "--help"]):
        assert probe(argv)["heavy"] in ([], ["psutil"]), argv


def test_every_command_module_is_reachable_from_the_table():
    """Every coral_lib/commands/*.py is named in COMMANDS (or is a helper another command
    module imports), so a new command cannot be left out of the `coral` command."""
    on_disk = {p.stem for p in COMMANDS_DIR.glob("*.py")} - {"__init__"}
    assert on_disk == set(cli.command_modules()) | set(cli.HELPER_MODULES)


def _registered_help() -> dict[str, str]:
    parser = cli.build_parser(load=cli.command_modules())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest: action.help for action in sub._choices_actions}


def test_table_help_matches_what_each_module_registers():
    """The light `coral --help` shows the same one-liners the full parser does, and every
    command a module registers is in the table (none hidden behind another's module)."""
    registered = _registered_help()
    assert set(registered) == set(cli.COMMANDS)
    assert registered == {name: helptext for name, (_, helptext) in cli.COMMANDS.items()}


def test_full_parsers_parse_as_before():
    parser = cli.build_parser(["exec"])
    args = parser.parse_args(["exec", "--service", "api", "--", "id"])
    assert args.func.__name__ == "exec_command" and args.argv == ["--", "id"]
    args = cli.build_parser(["agent"]).parse_args(["agent", "node", "--node-name", "n1"])
    assert args.func.__module__ == "coral_lib.commands.agent_node"


def test_unknown_command_names_the_accepted_ones(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["nosuch"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nosuch'" in err and "exec" in err


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_subcommand_help_text_is_the_full_one():
    out = subprocess.run([sys.executable, "-m", "coral_lib.cli", "exec", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--max-concurrency" in out and "colony connection" in out
