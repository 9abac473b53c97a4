"""`systemd-analyze security` of the colony and agent units (issue 12): one systemd-nspawn
host (tests/support/nspawn.py) gets coral.mesh's colony and agent from
playbooks/deploy-coral.yml over SSH, then systemd-analyze scores both units inside it
(0 = most sandboxed, 10 = exposed; goal colony <= 2.5). Debian's own ssh.service is scored
alongside as a reference.

    .venv/bin/python -m bench.bench_unit_security
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
UNITS = {"colony": "coral-colony", "agent": "coral-agent", "ssh_reference": "ssh"}


def exposure(text: str) -> float:
    """The overall exposure level out of `systemd-analyze security UNIT` output."""
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", text)
    if not match:
        raise ValueError(f"no exposure level in systemd-analyze output: {text[-500:]!r}")
    return float(match.group(1))


def _deploy(work: pathlib.Path, fleet, name: str) -> None:
    from tests.support import nspawn
    out = subprocess.run(["bash", str(ROOT / "tools/install_collection.sh"),
                          str(work / "coll")], capture_output=True, text=True, check=True)
    collection = pathlib.Path(out.stdout.strip().splitlines()[-1])
    settings = {"coral_hosts": "all", "coral_colony_host": name,
                "coral_colony_listen": f"127.0.0.1:{nspawn.free_port()}",
                "coral_lib_pip_spec": nspawn.coral_wheel(fleet.wheels),
                "coral_pip_extra_args": ["--no-index", "--find-links", nspawn.WHEELS_MOUNT]}
    (work / "vars.yml").write_text(yaml.safe_dump(settings))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(work / "coll"),
           "ANSIBLE_HOME": str(work / "home"), "ANSIBLE_NOCOLOR": "1"}
    bin_dir = pathlib.Path(sys.executable).parent
    run = subprocess.run([str(bin_dir / "ansible-playbook"), "-i",
                          str(fleet.inventory({"coral": [name]})),
                          str(collection / "playbooks/deploy-coral.yml"),
                          "-e", f"@{work / 'vars.yml'}"],
                         env=env, capture_output=True, text=True, timeout=900)
    if run.returncode != 0:
        raise RuntimeError("deploy-coral.yml failed:\n" + run.stdout[-3000:])


def run(*, quick: bool = False) -> dict:
    """Boot a host, deploy, score the units; `quick` changes nothing (one run is cheap)."""
    from tests.support import nspawn
    started = time.monotonic()
    name = "bench-units"
    with tempfile.TemporaryDirectory(prefix="coral-bench-units-") as tmp:
        fleet = nspawn.start_fleet(pathlib.Path(tmp) / "fleet", [name])
        try:
            _deploy(pathlib.Path(tmp), fleet, name)
            host = fleet.hosts[name]
            figures = {}
            for key, unit in UNITS.items():
                out = host.ssh(f"systemd-analyze security {unit} --no-pager")
                figures[f"{key}_exposure"] = exposure(out.stdout)
        finally:
            fleet.stop()
    return {**figures, "colony_goal": 2.5,
            "colony_within_goal": figures["colony_exposure"] <= 2.5,
            "setup_s": round(time.monotonic() - started, 1)}


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:24} {value}")
