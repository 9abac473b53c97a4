#!/usr/bin/env bash
# The whole test suite: set up (idempotent), lint, then pytest. What .ci/run runs.
# Tests run on parallel workers (pytest-xdist): CORAL_TEST_WORKERS of them, by default one
# more than the cores, since most tests wait on subprocesses (colonies, agents, containerd,
# ansible) rather than compute; more workers mainly slow the heaviest tests. --dist loadfile
# with the scheduler of tests/support/parallel.py keeps each test file, and each directory
# sharing a costly session fixture, on one worker. Extra arguments go to pytest (`-n 0` runs
# serially).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
lint-imports
workers=${CORAL_TEST_WORKERS:-$(( $(nproc) + 1 ))}
# A short base for tmp_path: unix socket paths under it stay as short as in a serial run
# (/tmp/pytest-of-root/pytest-N), although each worker adds a directory (popen-gwN).
basetemp=$(mktemp -d /tmp/ctest.XXXXXX)
rc=0
pytest -q -p no:cacheprovider -n "$workers" --dist loadfile --basetemp "$basetemp" "$@" || rc=$?
[ "$rc" != 0 ] || rm -rf "$basetemp"  # kept when something failed, to look into
exit "$rc"
