"""Generate Python code for every .proto under proto/ into coral_lib/_proto (or --out).

protoc writes imports such as `from coral.mesh.v1 import mesh_pb2`; they are rewritten to
`from coral_lib._proto.coral.mesh.v1 import mesh_pb2` so the generated code lives inside the
package without touching sys.path.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import sys
import tempfile

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PACKAGE = "coral_lib._proto"


def generate(out_dir: pathlib.Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    include = str(pathlib.Path(protoc.__file__).parent / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={tmp}",
                f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", *protos]
        if protoc.main(args) != 0:
            sys.exit("protoc failed")
        top = {p.parts[0] for p in map(pathlib.Path, protos)}
        _rewrite_imports(pathlib.Path(tmp), top)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(tmp, out_dir)
    _add_init_files(out_dir)


def _rewrite_imports(tree: pathlib.Path, top_packages: set[str]) -> None:
    pattern = re.compile(rf"^(from|import) ({'|'.join(map(re.escape, top_packages))})([. ])", re.M)
    for path in tree.rglob("*.py*"):
        text = path.read_text()
        path.write_text(pattern.sub(rf"\1 {PACKAGE}.\2\3", text))


def _add_init_files(out_dir: pathlib.Path) -> None:
    (out_dir / "__init__.py").write_text(
        '"""Generated protobuf and gRPC code. Never edit by hand: run `make proto`."""\n'
    )
    for sub in out_dir.rglob("*"):
        if sub.is_dir() and not (sub / "__init__.py").exists():
            (sub / "__init__.py").write_text("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "coral_lib" / "_proto")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
