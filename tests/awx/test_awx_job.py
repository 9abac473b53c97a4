"""Issue 16, item 12: "AWX's execution path for real: build the execution environment with
ansible-builder (v3) on podman/buildah from a locally built base, then run `fleet_exec` and
the colony inventory source inside it with `ansible-runner --process-isolation`, the way
AWX runs a job template, with the credential type's injectors supplying the `CORAL_*`
variables." And item 9: "the credential type ships as a file plus an
`awx.awx.credential_type` example; the inventory source documented with it".

What is real: the EE is built by ansible-builder from the shipped execution-environment.yml
(tools/build_ee.sh: local base, wheelhouse, offline Galaxy — nothing else changed);
ansible-runner starts it with podman, as AWX's receptor worker does; the colony and the host
agent are real processes on this machine, reached from the container over the host's
network namespace (shortcut: `--network=host`, where AWX would route to the colony's
address); the job's CORAL_* variables and CA file come from the shipped credential type's
injectors, rendered the way AWX renders them (tests/support/awx.py). What AWX itself adds
(its database, receptor, the UI) is not here.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.support import awx, coral_procs

ROOT = pathlib.Path(__file__).resolve().parents[2]
# the first test builds the EE from nothing on a fresh machine (CI): minutes, more beside
# parallel workers on 2 cores
pytestmark = pytest.mark.timeout(1200)

CREDENTIAL_TYPE = ROOT / "extensions" / "awx" / "credential_type_coral.yml"

INVENTORY_SOURCE = ROOT / "inventories" / "coral.colony.yml"
# the fleet exec playbook as the project holds it (fleet_exec.yml once playbooks are renamed)
FLEET_EXEC = next(p for p in (ROOT / "playbooks" / "fleet_exec.yml",
                              ROOT / "playbooks" / "fleet-exec.yml") if p.exists())
POLICY = """
rules:
  - {name: admin-all, identities: [admin],
     verbs: [read, exec, shell, tap, trace, approve, admin]}
  - {name: awx-jobs, identities: [awx-job], verbs: [read, exec]}
  - {name: awx-readers, identities: [awx-reader], verbs: [read]}
"""


@pytest.fixture(scope="module")
def ee() -> dict:
    """The EE image (tools/build_ee.sh; cached under build/ee by a hash of its inputs)."""
    run = subprocess.run(["bash", str(ROOT / "tools" / "build_ee.sh")], cwd=ROOT,
                         capture_output=True, text=True, timeout=3600,
                         env={**os.environ, "PYTHON": sys.executable})
    assert run.returncode == 0, run.stderr[-5000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A colony with a policy letting identity awx-job read and exec and awx-reader only
    read, their tokens, and host agent web-1 serving `api`."""
    work = tmp_path_factory.mktemp("awx")
    data = work / "colony"
    data.mkdir()
    tokens = {identity: coral_procs.coral(
        "colony", "token", "add", "--data-dir", str(data), "--identity", identity,
        check=True).stdout.strip().splitlines()[-1] for identity in ("awx-job", "awx-reader")}
    (work / "policy.yaml").write_text(POLICY)
    colony = coral_procs.Colony(data, args=("--policy", str(work / "policy.yaml"))).start()
    agent = coral_procs.Agent(work / "agents", colony, agent_id="web-1", services=[
        {"name": "api", "port": coral_procs.free_port()}]).start()
    try:
        coral_procs.wait_registered(colony, ["web-1"])
        yield colony, tokens
    finally:
        agent.stop()
        colony.stop()


def job_dir(tmp_path: pathlib.Path, colony, token: str) -> tuple[pathlib.Path, dict]:
    """A runner private data directory as AWX lays one out for a job: the project checkout,
    the inventory source file, and the credential's injected env vars and files."""
    private = tmp_path / "job"
    shutil.copytree(ROOT / "playbooks", private / "project" / "playbooks")
    (private / "inventory").mkdir(parents=True)
    shutil.copy(INVENTORY_SOURCE, private / "inventory" / INVENTORY_SOURCE.name)
    (private / "inventory" / "hosts").write_text("localhost ansible_connection=local\n")
    inputs = {"address": colony.address, "ca": (colony.data_dir / "ca.crt").read_text(),
              "token": token, "client_cert": "", "client_key": ""}
    env = awx.inject(awx.load_credential_type(CREDENTIAL_TYPE), inputs, private)
    (private / "env" / "envvars").write_text(yaml.safe_dump(env))
    return private, env


def runner_env(ee: dict) -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": ee["containers_conf"],
            "CONTAINERS_STORAGE_CONF": ee["storage_conf"]}


# AWX's own container options for a podman EE (build_execution_environment_params:
# `--user=root`); `--network=host` stands in for its DEFAULT_CONTAINER_RUN_OPTIONS
# (slirp4netns), so the job reaches the colony on this machine's loopback.
CONTAINER_OPTIONS = ["--user=root", "--network=host"]


def isolation_args(ee: dict) -> list[str]:
    return ["--process-isolation", "--process-isolation-executable", "podman",
            "--container-image", ee["image"],
            *(f"--container-option={option}" for option in CONTAINER_OPTIONS)]


def run_fleet_exec_job(ee: dict, private: pathlib.Path) -> subprocess.CompletedProcess:
    """`ansible-runner run` of the fleet exec playbook in the EE, as AWX starts a job."""
    (private / "env" / "extravars").write_text(yaml.safe_dump({
        "coral_exec_command": "uname -s", "coral_exec_service": "api",
        # the job's Python is the EE's (the playbook's default interpreter is a host path)
        "coral_python_interpreter": "{{ ansible_playbook_python }}"}))
    return subprocess.run(
        [str(pathlib.Path(sys.executable).parent / "ansible-runner"), "run", str(private),
         "-p", f"playbooks/{FLEET_EXEC.name}", *isolation_args(ee)],
        capture_output=True, text=True, timeout=600, env=runner_env(ee))


def test_awx_job_template_runs_fleet_exec_in_ee(ee, fleet, tmp_path):
    """A job template's run: fleet exec in the EE with the credential's injected CORAL_*
    variables, RBAC and audit under the credential's identity."""
    colony, tokens = fleet
    token = tokens["awx-job"]
    private, _ = job_dir(tmp_path, colony, token)
    run = run_fleet_exec_job(ee, private)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "web-1" in output and "Linux" in output
    assert token not in output
    audit = coral_procs.coral("audit", "list", "--requester", "awx-job", "-o", "json",
                              env=colony.operator_env)
    assert audit.returncode == 0, audit.stderr
    records = json.loads(audit.stdout)
    assert any(r.get("agent_id") == "web-1" and r.get("command") == "uname -s"
               and r.get("decision_rule") == "awx-jobs" for r in records), records


def test_awx_job_with_a_read_only_credential_runs_nothing(ee, fleet, tmp_path):
    """Attacker's view: a job whose credential may only read cannot exec through the EE —
    the colony refuses (RBAC by the token's identity, whatever the job asks), the job fails
    with the troubleshooting guide's message, and no exec is audited as started."""
    colony, tokens = fleet
    private, _ = job_dir(tmp_path, colony, tokens["awx-reader"])
    run = run_fleet_exec_job(ee, private)
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-4000:]
    assert "exec refused: no rule allows awx-reader to exec" in output, output[-4000:]
    assert tokens["awx-reader"] not in output
    audit = coral_procs.coral("audit", "list", "--requester", "awx-reader", "-o", "json",
                              env=colony.operator_env)
    records = json.loads(audit.stdout)
    kinds = {r["kind"] for r in records}
    assert "refused" in kinds and "started" not in kinds, records


def plain(value):
    """A value of `ansible-inventory --list` JSON with ansible-core 2.19's marker for
    untrusted strings ({"__ansible_unsafe": text}, which Ansible decodes back) removed."""
    if isinstance(value, dict) and set(value) == {"__ansible_unsafe"}:
        return value["__ansible_unsafe"]
    return value


def test_awx_inventory_source_syncs_in_ee(ee, fleet, tmp_path):
    """An inventory update: `ansible-inventory` on the colony inventory source file, in the
    EE, with the credential's variables (AWX runs inventory updates through ansible-runner
    the same way)."""
    import ansible_runner

    colony, tokens = fleet
    token = tokens["awx-job"]
    private, env = job_dir(tmp_path, colony, token)
    os.environ.update(CONTAINERS_CONF=ee["containers_conf"],
                      CONTAINERS_STORAGE_CONF=ee["storage_conf"])
    out, err, rc = ansible_runner.run_command(
        executable_cmd="ansible-inventory",
        cmdline_args=["--list", "--export", "-i", f"/runner/inventory/{INVENTORY_SOURCE.name}"],
        private_data_dir=str(private), process_isolation=True,
        process_isolation_executable="podman", container_image=ee["image"],
        container_options=CONTAINER_OPTIONS, envvars=env, quiet=True)
    assert rc == 0, out[-4000:] + err[-4000:]
    inventory = json.loads(out[out.index("{"):])
    hostvars = inventory["_meta"]["hostvars"]
    web = [vars_ for vars_ in hostvars.values() if plain(vars_.get("coral_agent")) == "web-1"]
    assert web, (hostvars, out[-3000:], err[-3000:])
    assert all(plain(v["ansible_connection"]) == "coral.mesh.coral" for v in web)
    assert token not in out
