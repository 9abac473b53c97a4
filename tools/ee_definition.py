"""The shipped execution-environment.yml, adapted for a build with no registry and no
package index (tools/build_ee.sh). Everything else in the definition is kept as shipped.

What changes, and why:
* the base image: a Debian base made here with mmdebstrap (`--build-arg EE_BASE_IMAGE`
  would do the same; the definition is written with it so `ansible-builder create` alone
  shows the real file);
* the package manager: `/usr/bin/true` — the base already holds every Debian package the
  bindep files ask for at run time, and nothing can be downloaded;
* Galaxy: collections named by Galaxy name are replaced by local directories (the
  kubernetes.core this machine's `ansible` package bundles); `--offline` is passed by the
  build script;
* Python: a virtual environment on Debian's python3 (VENV below);
* pip: every stage installs from the wheelhouse copied into the context (PIP_NO_INDEX,
  PIP_FIND_LINKS), and Debian's externally-managed marker is overridden.

    python tools/ee_definition.py SHIPPED OUT --base IMAGE --collection-dir NAME=PATH ...
"""

from __future__ import annotations

import argparse
import copy
import pathlib

import yaml

WHEELS = "wheels"  # in the build context (_build/wheels)
PIP_ENV = [
    f"COPY _build/{WHEELS} /ee-wheels",
    "ENV PIP_NO_INDEX=1 PIP_FIND_LINKS=/ee-wheels PIP_BREAK_SYSTEM_PACKAGES=1"
    " PIP_DISABLE_PIP_VERSION_CHECK=1",
]
STAGES = ("prepend_base", "prepend_galaxy", "prepend_builder", "prepend_final")
# Debian's system Python refuses ensurepip (which builder's pip_install runs) outside a
# virtual environment: the EE's Python is a venv made in the base stage, first on PATH.
VENV = "/opt/ee"
VENV_STEPS = [f"RUN python3 -m venv {VENV}", f"ENV PATH={VENV}/bin:$PATH"]


def local_definition(shipped: dict, *, shipped_dir: str, base_image: str,
                     collection_dirs: dict[str, str]) -> dict:
    """`shipped` with a local base, no package manager, local collections and the
    wheelhouse; `collection_dirs` maps a Galaxy name (kubernetes.core) to a path relative
    to the new file; the shipped file's own relative sources are made absolute from
    `shipped_dir`, as builder resolves them from the definition's directory."""
    local = copy.deepcopy(shipped)
    for item in local.get("additional_build_files", []):
        item["src"] = str(pathlib.Path(shipped_dir, item["src"]))
    local["images"] = {"base_image": {"name": base_image}}
    local.setdefault("options", {})["package_manager_path"] = "/usr/bin/true"
    galaxy = local["dependencies"]["galaxy"]
    galaxy["collections"] = [_local_collection(entry, collection_dirs)
                             for entry in galaxy["collections"]]
    files = local.setdefault("additional_build_files", [])
    files.append({"src": WHEELS, "dest": WHEELS})
    for name, path in collection_dirs.items():
        files.append({"src": path, "dest": f"collections/{name}"})
    steps = local.setdefault("additional_build_steps", {})
    for stage in STAGES:
        steps[stage] = PIP_ENV + list(steps.get(stage) or [])
    steps["prepend_base"] = VENV_STEPS + steps["prepend_base"]
    local["dependencies"]["python_interpreter"] = {"python_path": f"{VENV}/bin/python3"}
    return local


def _local_collection(entry: dict, collection_dirs: dict[str, str]) -> dict:
    if entry.get("type") in ("file", "dir", "url", "git") or entry["name"] not in collection_dirs:
        return entry
    # builder copies additional_build_files under _build/ in the galaxy stage's workdir
    return {"name": f"collections/{entry['name']}", "type": "dir"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shipped")
    parser.add_argument("out")
    parser.add_argument("--base", required=True)
    parser.add_argument("--collection-dir", action="append", default=[],
                        help="NAME=PATH relative to OUT's directory")
    args = parser.parse_args()
    dirs = dict(item.split("=", 1) for item in args.collection_dir)
    shipped = yaml.safe_load(pathlib.Path(args.shipped).read_text())
    local = local_definition(shipped, shipped_dir=str(pathlib.Path(args.shipped).resolve().parent),
                             base_image=args.base, collection_dirs=dirs)
    pathlib.Path(args.out).write_text(yaml.safe_dump(local, sort_keys=False))


if __name__ == "__main__":
    main()
