#!/usr/bin/env bash
# ansible-test sanity on the built coral.mesh collection, offline.
#
#   tools/sanity.sh [ansible-test sanity options...]    e.g. --test validate-modules
#
# ansible-test needs the collection under ansible_collections/coral/mesh: the collection is
# built and installed into a temp tree (as users get it) plus this repo's tests/config.yml
# and tests/sanity/. Its sanity virtualenvs bootstrap pip with a script from
# ci-files.testing.ansible.com, which cannot be reached here: tools/get_pip_offline.py
# stands in for it (ensurepip, then pip from the configured index).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CORAL_ANSIBLE_BIN:-$ROOT/.venv/bin}
export PATH="$BIN:$PATH"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

PIP_VERSION=$("$BIN/python" - <<'PY'
import re, inspect
from ansible_test._internal import python_requirements as p
print(re.search(r"pip='([0-9.]+)'", inspect.getsource(p)).group(1))
PY
)
CACHE="$HOME/.ansible/test/cache/get_pip_${PIP_VERSION//./_}.py"
mkdir -p "$(dirname "$CACHE")"
cmp -s "$ROOT/tools/get_pip_offline.py" "$CACHE" 2>/dev/null || cp "$ROOT/tools/get_pip_offline.py" "$CACHE"

COLLECTION=$("$ROOT/tools/install_collection.sh" "$STAGE" 2>/dev/null)
# The artifact is checked as shipped. coral_lib (bundled so the roles can pip-install it)
# is held to ruff + import-linter instead of ansible-test's plugin style: the ignore files
# skip pep8 and pylint for each of its files, with the reason (tools/sanity_ignores.py).
mkdir -p "$COLLECTION/tests"
cp -r "$ROOT/tests/config.yml" "$ROOT/tests/sanity" "$COLLECTION/tests/"
cd "$COLLECTION"
exec ansible-test sanity --python "${CORAL_SANITY_PYTHON:-3.11}" --color no "$@"
