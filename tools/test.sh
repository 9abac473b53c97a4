#!/usr/bin/env bash
# The whole test suite: set up (idempotent), lint, then pytest. What .ci/run runs.
# Tests run on parallel workers (pytest-xdist): CORAL_TEST_WORKERS of them, by default two per
# core, since most tests wait on subprocesses (colonies, agents, containerd, ansible) rather
# than compute. --dist loadfile keeps each unit of tests on one worker (tests/support/parallel.py:
# a file, or a directory sharing a costly session fixture). Extra arguments go to pytest
# (`-n 0` runs serially).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
lint-imports
workers=${CORAL_TEST_WORKERS:-$(( $(nproc) * 2 ))}
exec pytest -q -p no:cacheprovider -n "$workers" --dist loadfile "$@"
