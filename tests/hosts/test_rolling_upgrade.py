"""Issue 12, "Rolling upgrade": playbooks/upgrade_agents.yml upgrades agents host by host
(serial), gated on the upgraded agent re-registering with the new version and answering an
exec, and stops at the first host that fails the gate -- tested with a broken new version
(its agent exits at start) and then a good one."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

from tests.hosts.conftest import AGENTS, ROOT_DIR, recaps

UPGRADE_DIR = "/opt/coral-upgrade"


def _wheel(work: pathlib.Path, version: str, *, broken: bool) -> pathlib.Path:
    """coral-lib at `version` built from this checkout; `broken` makes `coral agent start`
    exit at once (the colony and the rest of the CLI still work)."""
    src = work / f"src-{version}"
    shutil.copytree(ROOT_DIR / "coral_lib", src / "coral_lib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT_DIR / name, src / name)
    for path, old in ((src / "pyproject.toml", 'version = "0.1.0"'),
                      (src / "coral_lib/__init__.py", '__version__ = "0.1.0"')):
        text = path.read_text()
        assert old in text, path
        path.write_text(text.replace(old, old.replace("0.1.0", version)))
    if broken:  # only `coral agent start` breaks; `coral agent identity` still answers
        agent = src / "coral_lib/commands/agent.py"
        text = agent.read_text()
        start = "def start_command(args: argparse.Namespace) -> int:\n"
        assert start in text
        agent.write_text(text.replace(start, start + '    raise SystemExit('
                                      '"this coral-lib build is broken on purpose")\n'))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                          "--no-build-isolation", "-w", str(work / "wheels"), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (wheel,) = (work / "wheels").glob(f"coral_lib-{version}-*.whl")
    return wheel


@pytest.fixture(scope="module")
def new_wheels(deployed, tmp_path_factory) -> dict[str, str]:
    work = tmp_path_factory.mktemp("upgrade")
    wheels = {"broken": _wheel(work, "0.1.0.post2", broken=True),
              "good": _wheel(work, "0.1.0.post1", broken=False)}
    for name in AGENTS:  # onto each agent host, as a package repository would serve them
        target = deployed.host(name).merged / UPGRADE_DIR.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        for wheel in wheels.values():
            shutil.copy(wheel, target / wheel.name)
    return {kind: f"{UPGRADE_DIR}/{wheel.name}" for kind, wheel in wheels.items()}


def _versions(deployed) -> dict[str, str]:
    import json
    out = deployed.coral("agents", "-o", "json")
    return {a["agent_id"]: a["version"] for a in json.loads(out.stdout) if a["connected"]}


def _upgrade(ansible, deployed, wheel: str, version: str) -> subprocess.CompletedProcess:
    return deployed.playbook(ansible, "-e", "coral_hosts=coral_agents",
                             "-e", f"coral_lib_pip_spec={wheel}",
                             "-e", f"coral_upgrade_version={version}",
                             "-e", "coral_upgrade_gate_timeout=20",
                             playbook="playbooks/upgrade_agents.yml")


def test_broken_version_stops_the_rollout_at_the_first_host(ansible, deployed, new_wheels):
    run = _upgrade(ansible, deployed, new_wheels["broken"], "0.1.0.post2")
    assert run.returncode != 0
    rows = recaps(run.stdout)
    assert rows[AGENTS[0]]["failed"] == 1, run.stdout[-4000:]
    assert AGENTS[1] not in rows or rows[AGENTS[1]]["changed"] == 0, run.stdout[-4000:]
    versions = _versions(deployed)
    assert versions.get(AGENTS[1]) == "0.1.0"  # never touched, still serving
    # the broken build never registered (the colony may still list the old link until it
    # times out, so only the version tells)
    assert versions.get(AGENTS[0]) != "0.1.0.post2"
    log = deployed.host(AGENTS[0]).ssh("journalctl -u coral-agent --no-pager -o cat")
    assert "broken on purpose" in log.stdout, run.stdout[-5000:] + log.stdout[-3000:]


def test_good_version_rolls_through_every_agent_host(ansible, deployed, new_wheels):
    run = _upgrade(ansible, deployed, new_wheels["good"], "0.1.0.post1")
    assert run.returncode == 0, run.stdout[-6000:]
    # serial: one play batch per host, in inventory order
    batches = [line for line in run.stdout.splitlines()
               if line.startswith("PLAY [Upgrade the agents host by host]")]
    assert len(batches) == len(AGENTS)
    versions = _versions(deployed)
    assert {name: versions.get(name) for name in AGENTS} == dict.fromkeys(AGENTS, "0.1.0.post1")
    for name in AGENTS:
        out = deployed.coral("exec", "--agent", name, "--", "cat", "/etc/hostname")
        assert out.returncode == 0 and name in out.stdout
