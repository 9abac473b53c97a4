"""The previous release, built from git and installed in a private virtualenv.

`tests/skew/PREVIOUS_RELEASE` names the git ref. The fixture exports that tree with
`git archive`, builds its wheel with `pip wheel --no-deps --no-build-isolation` (offline:
the build tools are this venv's), installs it with no dependencies into a fresh venv, and
points that venv at this venv's site-packages for the third-party packages (grpcio,
cryptography...), so the old `coral` runs its own coral_lib with the pinned dependencies.
Its processes run without PYTHONPATH and from outside this tree, so nothing of the new
code leaks in.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest

from tests.support import coral_procs

HERE = pathlib.Path(__file__).parent
REPO = HERE.parent.parent


def previous_ref() -> str:
    lines = [line.strip() for line in (HERE / "PREVIOUS_RELEASE").read_text().splitlines()]
    return next(line for line in lines if line and not line.startswith("#"))


@dataclasses.dataclass(frozen=True)
class Release:
    ref: str
    version: str
    command: tuple[str, ...]  # the release's `coral`
    env: dict[str, str]

    def coral(self, *args: str, env: dict[str, str] | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self.command, *args], capture_output=True, text=True,
                              timeout=timeout, env={**self.env, **(env or {})}, cwd="/")

    def colony(self, data_dir: pathlib.Path, **kwargs) -> coral_procs.Colony:
        colony = coral_procs.Colony(data_dir, **kwargs)
        colony.command, colony.env = self.command, self.env
        return colony

    def agent(self, work_dir: pathlib.Path, colony: coral_procs.Colony, **kwargs
              ) -> coral_procs.Agent:
        agent = coral_procs.Agent(work_dir, colony, **kwargs)
        agent.command, agent.env = self.command, self.env
        return agent


def _run(*argv: str, **kwargs) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")


def build(ref: str, work: pathlib.Path) -> Release:
    src, wheels, venv = work / "src", work / "wheels", work / "venv"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref],
                             capture_output=True, timeout=120, check=False)
    if archive.returncode != 0:
        raise RuntimeError(f"git archive {ref}: {archive.stderr.decode()[-500:]} (fetch the "
                           f"ref named in tests/skew/PREVIOUS_RELEASE)")
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(wheels), str(src))
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    wheel = next(wheels.glob("*.whl"))
    # without PYTHONPATH: a checkout on it with coral_lib.egg-info (left by an in-place build)
    # makes pip see coral-lib as installed already and install nothing into the venv
    _run(sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--no-deps", "--no-index", "-q", str(wheel),
         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # third-party packages from this venv; appended after the old venv's own coral_lib
    pathlib.Path(site, "_coral_skew_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = (str(venv / "bin" / "coral"),)
    version = subprocess.run([*command, "--version"], capture_output=True, text=True,
                             env=env, cwd="/", check=True).stdout.split()[-1]
    return Release(ref, version, command, env)


@pytest.fixture(scope="session")
def previous(tmp_path_factory) -> Release:
    release = build(previous_ref(), tmp_path_factory.mktemp("previous-release"))
    where = subprocess.run([*release.command[:1], "--version"], capture_output=True, text=True,
                           env=release.env, cwd="/").stdout
    assert "coral" in where
    return release
