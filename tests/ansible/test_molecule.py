"""Issue 2: the molecule scenario molecule/default (default driver, localhost) converges the
host roles, proves idempotence, verifies that the agent is registered and an exec works,
and cleans up. The scenario is a development file (kept out of the collection artifact,
issue 16 item 8), so molecule runs from the checkout; the roles it converges are the
installed collection's (the `ansible` fixture's collections path), as a user's would be."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from coral_lib import supervise
from tests.ansible.conftest import BIN, ROOT, free_port


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~40 s alone; minutes beside parallel workers on 2 cores
def test_molecule_default_scenario_converges_is_idempotent_and_verifies(
        ansible, target_venv, tmp_path):
    root = tmp_path / "molecule"
    env = {**ansible.env, "CORAL_MOLECULE_ROOT": str(root),
           "CORAL_MOLECULE_PORT": str(free_port()), "CORAL_MOLECULE_VENV": str(target_venv),
           "CORAL_MOLECULE_REMOVE_VENV": "false",  # the session's venv serves later tests
           "NO_COLOR": "1", "MOLECULE_NO_LOG": "false",
           "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "ephemeral")}
    env.pop("ANSIBLE_CONFIG")  # molecule writes its own ansible.cfg for the scenario
    try:
        out = subprocess.run([str(BIN / "molecule"), "test", "--scenario-name", "default"],
                             cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=900)
        text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
        assert out.returncode == 0, text[-6000:]
        for step in ("converge", "idempotence", "verify", "cleanup"):
            assert re.search(rf"{step}: Executed: Successful", text), step
        assert "All assertions passed" in text
    finally:
        for unit in ("coral-agent", "coral-colony"):
            supervise.stop(os.path.join(root, "run", f"{unit}.pid"))
    assert not (root / "run" / "coral-agent.pid").exists()
