"""Issue 15, Structure: "Programs kept as strings (the BPF C program and tracer in
ops/trace.py, the tap child in ops/tap.py) become package data files that linters and
editors see." (tests/trace and tests/tap run them for real.)
"""

from __future__ import annotations

import ast
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

from coral_lib.ops import base

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROGRAMS = ROOT / "coral_lib/ops/programs"
NAMES = ("trace.bpf.c", "tracer.py", "tap_child.py", "chroot_helper.py")


def test_programs_are_files_loaded_as_package_data():
    for name in NAMES:
        assert base.program_text(name) == (PROGRAMS / name).read_text()
    assert "TRACEPOINT_PROBE(sched, sched_process_exec)" in base.program_text("trace.bpf.c")


def test_no_program_is_kept_as_a_string_in_the_ops_modules():
    for path in (ROOT / "coral_lib/ops").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                # a multi-line program (a one-line `-c "import bcc"` probe is fine)
                program_like = text.count("\n") >= 3 and (
                    "TRACEPOINT_PROBE" in text or "import " in text)
                assert not program_like, f"{path.name}:{node.lineno}: keep programs in programs/"


def test_ruff_checks_the_python_programs():
    out = subprocess.run([str(pathlib.Path(sys.executable).with_name("ruff")), "check",
                          "--show-files", str(ROOT)], cwd=ROOT, capture_output=True, text=True)
    checked = {pathlib.Path(line.strip()).name for line in out.stdout.splitlines()
               if "/coral_lib/ops/programs/" in line}
    assert checked == {"tracer.py", "tap_child.py", "chroot_helper.py"}


def test_programs_ship_in_the_wheel(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "coral_lib", src / "coral_lib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True, env={**os.environ, "PIP_NO_INPUT": "1"})
    wheel = next((tmp_path / "dist").glob("coral_lib-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in NAMES:
        assert f"coral_lib/ops/programs/{name}" in names, name
