"""Issue 12, "Test hosts": the molecule scenario molecule/hosts (the `default` driver with
create/destroy playbooks on tests/support/nspawn.py) boots two systemd hosts, converges
deploy-coral.yml over SSH, proves idempotence, verifies a fleet exec from both hosts and
destroys them. Runs from the checkout (its create/destroy playbooks call the test helper)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

import pytest

from tests.ansible.conftest import BIN, ROOT, free_port


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~1 min alone; minutes beside parallel workers on 2 cores
def test_molecule_hosts_scenario_boots_converges_verifies_and_destroys(tmp_path):
    control = tempfile.mkdtemp(prefix="cp-", dir="/tmp")  # ssh's socket path has a short limit
    env = {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(ROOT),
           "HOME": str(tmp_path), "NO_COLOR": "1", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_SSH_CONTROL_PATH_DIR": control,
           "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".collections"),
           "CORAL_MOLECULE_HOSTS_PORT": str(free_port()),
           "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "ephemeral")}
    try:
        out = subprocess.run([str(BIN / "molecule"), "test", "--scenario-name", "hosts"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    finally:
        shutil.rmtree(control, ignore_errors=True)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert out.returncode == 0, text[-6000:]
    for step in ("create", "converge", "idempotence", "verify", "destroy"):
        assert re.search(rf"{step}: Executed: Successful", text), step
    assert "All assertions passed" in text
    assert not (tmp_path / "ephemeral" / "hosts").exists()  # destroy removed the hosts
