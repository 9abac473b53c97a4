"""Write tests/sanity/ignore-<version>.txt for every ansible-core version meta/runtime.yml's
requires_ansible admits: the plugin lines kept as they are, plus one pep8 and one pylint
skip per coral_lib source file the collection ships.

    python tools/sanity_ignores.py          # rewrite the files
    python tools/sanity_ignores.py --check  # exit 1 when they are out of date

coral_lib is the collection's bundled Python library (the roles install it into a
virtualenv); it is held to ruff + import-linter like the rest of the repository, not to
ansible-test's plugin style (pep8 at 160 columns, pylint's ban on `_`), which is why it is
skipped for exactly those two tests and no others.
"""

from __future__ import annotations

import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
REASON = "# coral-lib is a Python package held to ruff and import-linter, not plugin style"
MARK = " " + REASON


def admitted_versions(spec: str) -> list[str]:
    """'>=2.18.0,<2.21.0' -> ['2.18', '2.19', '2.20'] (minor versions of 2.x)."""
    low = re.search(r">=\s*2\.(\d+)", spec)
    high = re.search(r"<\s*2\.(\d+)", spec)
    if not (low and high):
        raise SystemExit(f"requires_ansible {spec!r}: expected '>=2.A.0,<2.B.0' (bounded)")
    return [f"2.{minor}" for minor in range(int(low.group(1)), int(high.group(1)))]


def library_lines() -> list[str]:
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "coral_lib").rglob("*.py")
                   if "__pycache__" not in p.parts)
    return [f"{path} {test}!skip{MARK}" for path in files for test in ("pep8", "pylint")]


def render(existing: str) -> str:
    kept = [line for line in existing.splitlines() if line and not line.endswith(MARK)]
    return "\n".join(kept + library_lines()) + "\n"


def main(argv: list[str]) -> int:
    spec = yaml.safe_load((ROOT / "meta/runtime.yml").read_text())["requires_ansible"]
    base = (ROOT / "tests/sanity/ignore-2.19.txt").read_text()
    stale = []
    for version in admitted_versions(spec):
        path = ROOT / f"tests/sanity/ignore-{version}.txt"
        wanted = render(path.read_text() if path.exists() else base)
        if path.exists() and path.read_text() == wanted:
            continue
        stale.append(path.name)
        if "--check" not in argv:
            path.write_text(wanted)
    if stale and "--check" in argv:
        print("out of date: " + ", ".join(stale) + " (run python tools/sanity_ignores.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
