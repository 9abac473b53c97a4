"""Acceptance (issue 5): the molecule scenario molecule/k8s does the deployment through
molecule: prepare starts the API server fixture, converge runs deploy-coral.yml with
coral_mode=daemonset and then webhook, idempotence, verify, cleanup stops the fixture.

Marked slow: `molecule test -s k8s` takes about 1.5-2.5 minutes on 2 cores (two full
deploys plus the idempotence rerun), more than this area's budget; run it with
`pytest -m slow tests/ansible_k8s` (the playbook-level tests cover the same ground faster).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.ansible_k8s.conftest import REPO


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_molecule_k8s_scenario(tmp_path):
    env = {**os.environ, "CORAL_MOLECULE_K8S_ROOT": str(tmp_path / "molecule-k8s"),
           "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
           "NO_COLOR": "1", "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "molecule"), "test", "-s", "k8s"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    for step in ("prepare", "converge", "idempotence", "verify", "cleanup"):
        assert f"{step}: Executed: Successful" in output, output[-8000:]
    assert not (tmp_path / "molecule-k8s").exists(), "cleanup left the scratch directory"
