"""Issue 11, deployment: "The colony role deploys N replicas with the database settings."
A real ansible-playbook run of deploy-coral.yml on localhost with two colony replicas on a
real PostgreSQL; the agent gets both addresses; the DSN stays out of the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from coral_lib import supervise
from tests.ansible.conftest import free_port, make_deployment, recap


@pytest.mark.timeout(1200)  # a fresh target virtualenv installs coral-lib and psycopg first
def test_colony_role_deploys_replicas_sharing_postgresql(ansible, target_venv, tmp_path,
                                                         postgres_server):
    dsn = postgres_server.fresh_dsn().secret()
    deployment = make_deployment(tmp_path / "deploy", target_venv, coral_colony_replicas=2,
                                 coral_colony_database=dsn,
                                 coral_colony_replica_port_base=free_port())
    try:
        run = ansible.playbook("playbooks/deploy-coral.yml", "-e", f"@{deployment.vars_file}")
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert postgres_server.password not in run.stdout + run.stderr
        dsn_file = deployment.root / "etc" / "colony-database.dsn"
        assert dsn_file.read_text().strip() == dsn
        assert os.stat(dsn_file).st_mode & 0o777 == 0o600
        pids = [supervise.status(deployment.pid_file(f"coral-colony-{i}")) for i in (0, 1)]
        assert all(p.running for p in pids)
        host, port = deployment.address.rsplit(":", 1)
        both = f"{host}:{port},{host}:{int(port) + 1}"
        agent_config = (deployment.root / "etc" / "agent-config.yaml").read_text()
        assert both in agent_config  # the agent fails over between the replicas

        again = ansible.playbook("playbooks/deploy-coral.yml", "-e", f"@{deployment.vars_file}")
        assert recap(again.stdout)["changed"] == 0, again.stdout[-4000:]

        for address in (f"{host}:{port}", f"{host}:{int(port) + 1}"):  # each replica serves
            out = subprocess.run(
                [sys.executable, "-m", "coral_lib.cli", "exec", "--all", "-o", "json", "--",
                 "echo", "ok"], capture_output=True, text=True, timeout=60,
                env={**deployment.cli_env(ansible.env), "CORAL_COLONY_ADDRESS": address})
            assert out.returncode == 0, out.stderr
            assert [r["stdout"] for r in json.loads(out.stdout)["results"]] == ["ok\n"]
    finally:
        ansible.playbook("playbooks/deploy-coral.yml", "-e", f"@{deployment.vars_file}",
                         "-e", "coral_state=absent")
        for unit in ("coral-agent", "coral-colony-0", "coral-colony-1"):
            supervise.stop(deployment.pid_file(unit))
