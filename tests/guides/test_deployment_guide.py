"""Issue 16, Guides: "a deployment guide (host vs DaemonSet vs sidecar: what each sees,
needs and costs, how to choose)". The guide's table of what each mode needs from
Kubernetes is checked against what `coral_lib.manifests.render` produces, so it cannot
drift from the objects the roles apply; the README links both guides."""

from __future__ import annotations

import pathlib
import re

import pytest

from coral_lib import manifests
from coral_lib.manifests import settings as manifest_settings

ROOT = pathlib.Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "deployment-guide.md"
NEEDS_HEADER = "| mode | hostPID | privileged |"


def needs_table(text: str) -> dict[str, dict[str, str]]:
    """Rows of the guide's 'What each mode needs from Kubernetes' table, by mode."""
    lines = text[text.index(NEEDS_HEADER):].splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def agent_pod(mode: str, **values) -> tuple[dict, dict]:
    """(pod spec, agent container) as rendered for a mode."""
    objects = manifests.render(mode, manifest_settings.build(values))
    if mode == "daemonset":
        spec = next(o for o in objects if o["kind"] == "DaemonSet")["spec"]["template"]["spec"]
        return spec, spec["containers"][0]
    spec = next(o for o in objects if o["kind"] == "PodTemplate")["template"]["spec"]
    return spec, next(c for c in spec["initContainers"] if c["name"] == "coral-agent")


def described(spec: dict, container: dict) -> dict[str, str]:
    """The table's cells for one rendered agent pod."""
    security = container.get("securityContext") or {}
    added = (security.get("capabilities") or {}).get("add") or []
    share = spec.get("shareProcessNamespace")
    res = container["resources"]
    return {
        "hostPID": str(bool(spec.get("hostPID"))).lower(),
        "privileged": str(bool(security.get("privileged"))).lower(),
        "added capabilities": ", ".join(added) or "none",
        "shareProcessNamespace": "-" if share is None else str(share).lower(),
        "agent requests (cpu / memory)": f"{res['requests']['cpu']} / {res['requests']['memory']}",
        "agent limits (cpu / memory)": f"{res['limits']['cpu']} / {res['limits']['memory']}",
    }


RENDERED = {
    "daemonset": ("daemonset", {}),
    "daemonset (observe-only)": ("daemonset", {"observe_only": True}),
    "sidecar": ("sidecar", {}),
}


@pytest.mark.parametrize("row", sorted(RENDERED))
def test_deployment_guide_needs_table_matches_rendered_manifests(row):
    table = needs_table(GUIDE.read_text())
    assert set(table) == set(RENDERED)
    mode, values = RENDERED[row]
    expected = described(*agent_pod(mode, **values))
    assert {key: table[row][key] for key in expected} == expected


def test_deployment_guide_covers_each_mode_and_choice():
    text = GUIDE.read_text()
    for heading in ("## At a glance", "## What each mode needs from Kubernetes",
                    "## What each costs", "## How to choose"):
        assert heading in text
    glance = text[text.index("## At a glance"):text.index("## What each mode needs")]
    for row in ("sees", "exec goes through", "identity", "install"):
        assert re.search(rf"^\| {row} \|", glance, re.M), row


def test_readme_links_both_guides():
    readme = (ROOT / "README.md").read_text()
    assert "(docs/deployment-guide.md)" in readme
    assert "(docs/troubleshooting.md)" in readme
