#!/usr/bin/env bash
# The whole test suite: set up (idempotent), lint, then pytest. What .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
lint-imports
exec pytest -q -p no:cacheprovider "$@"
