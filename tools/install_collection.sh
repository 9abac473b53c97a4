#!/usr/bin/env bash
# Build the coral.mesh collection from this checkout and install the artifact into a
# collections path, the way users get it (ansible-galaxy collection build + install).
#
#   tools/install_collection.sh [DEST]      DEST default: ~/.ansible/collections
#
# Prints the installed collection directory. kubernetes.core (the dependency) comes with
# the `ansible` package in the virtualenv, so the install runs offline with --no-deps.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$HOME/.ansible/collections}
BIN=${CORAL_ANSIBLE_BIN:-$ROOT/.venv/bin}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$BIN/ansible-galaxy" collection build "$ROOT" --output-path "$WORK" --force >/dev/null
"$BIN/ansible-galaxy" collection install "$WORK"/coral-mesh-*.tar.gz -p "$DEST" \
  --force --no-deps --offline >/dev/null
echo "$DEST/ansible_collections/coral/mesh"
