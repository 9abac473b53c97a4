#!/usr/bin/env bash
# Build the AWX execution environment from the shipped execution-environment.yml with
# ansible-builder (v3) on podman, with no registry and no package index: a Debian base made
# here with mmdebstrap, the Python packages from a wheelhouse built on this machine (pip
# inside a build cannot reach the index), kubernetes.core from the `ansible` package in the
# virtualenv instead of Galaxy, and `ansible-galaxy --offline`. tools/ee_definition.py says
# exactly what differs from the shipped file. Cached by a hash of every input, so a CI run
# builds it once.
#
#   tools/build_ee.sh           build (or reuse) localhost/coral-ee:<key>
#   tools/build_ee.sh --force   rebuild even when the cache key matches
#
# Last line of stdout: the metadata JSON (also in build/ee/coral-ee.json): image, key,
# base, containers_conf, storage_conf (podman and ansible-runner need those two variables:
# CONTAINERS_CONF, CONTAINERS_STORAGE_CONF), seconds (of the last cold build).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FORCE=0
[ "${1:-}" = --force ] && FORCE=1

OUT=$ROOT/build/ee  # the shipped definition takes the collection from build/ee/
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=$(command -v python3)
BIN=$(dirname "$PYTHON")
VERSION=$(sed -n 's/^version: *//p' galaxy.yml | head -n1)

# Podman's settings for this machine (ENVIRONMENT: runc, rlimits within the hard limits,
# cgroupfs) and a private storage, so the EE and its layers stay under build/.
CONF_DIR=$OUT/containers
export CONTAINERS_CONF=$CONF_DIR/containers.conf CONTAINERS_STORAGE_CONF=$CONF_DIR/storage.conf
write_podman_conf() {  # $1: storage driver
  mkdir -p "$CONF_DIR"
  cat >"$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "$1"
graphroot = "$CONF_DIR/storage-$1"
runroot = "$CONF_DIR/run-$1"
EOF
  cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
# build steps and jobs share the host's network: nothing is downloaded in a build, and a
# job reaches the colony where this machine does (no CNI or slirp4netns needed)
netns = "host"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
}

# The base: Debian's Python (the EE's venv is made on it), tcpdump (meta/ee-bindep.txt).
BASE_SUITE=bookworm
BASE_MIRROR=${CORAL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_INCLUDE=python3,python3-pip,python3-venv,ca-certificates,tcpdump
BASE_EPOCH=1700000000
BASE_RECIPE="mmdebstrap --variant=minbase --include=$BASE_INCLUDE $BASE_SUITE $BASE_MIRROR nodoc $BASE_EPOCH"
BASE_KEY=$(printf '%s' "$BASE_RECIPE" | sha256sum | cut -c1-16)
BASE_REF=localhost/coral-ee-base:$BASE_KEY

base_image() {
  podman image exists "$BASE_REF" && return
  command -v mmdebstrap >/dev/null || { echo "build_ee: needs mmdebstrap (tools/setup.sh)" >&2; exit 1; }
  local rootfs=$OUT/base-$BASE_KEY.tar ctr mnt
  SOURCE_DATE_EPOCH=$BASE_EPOCH mmdebstrap --quiet --variant=minbase --include="$BASE_INCLUDE" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    "$BASE_SUITE" "$rootfs" "$BASE_MIRROR"
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  tar -C "$mnt" -xf "$rootfs"
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/sh "$ctr"
  buildah commit --quiet --timestamp "$BASE_EPOCH" --rm "$ctr" "$BASE_REF" >/dev/null
  rm -f "$rootfs"
}

# Everything the EE is built from (the base is keyed by its recipe).
collection() {
  rm -f "$OUT"/coral-mesh-*.tar.gz
  "$BIN/ansible-galaxy" collection build . --output-path "$OUT" --force >/dev/null
}
input_hash() {
  {
    printf '%s\n' "$BASE_RECIPE" "$VERSION"
    tar -xOzf "$OUT/coral-mesh-$VERSION.tar.gz" FILES.json MANIFEST.json
    sha256sum execution-environment.yml constraints.txt tools/build_ee.sh tools/ee_definition.py
    "$PYTHON" -m pip freeze --disable-pip-version-check 2>/dev/null \
      | grep -i -E '^(ansible|ansible-core|ansible-builder)==' || true
  } | sha256sum | cut -c1-32
}

wheelhouse() {  # everything pip installs in any stage of the build
  local wheels=$OUT/wheels log=$OUT/pip-wheel.log kc_requirements
  kc_requirements=$("$PYTHON" -c 'import ansible_collections.kubernetes.core as m, os; print(os.path.join(list(m.__path__)[0], "requirements.txt"))')
  rm -rf "$wheels" && mkdir -p "$wheels"
  mkdir -p build/locks
  (  # one in-place build of the checkout at a time (parallel test workers; tests/support/locks.py)
    flock 9
    "$PYTHON" -m pip wheel -q --disable-pip-version-check -c constraints.txt -w "$wheels" \
      . "ansible-core>=2.18,<2.20" ansible-runner bindep dumb-init pyyaml packaging \
      setuptools wheel pip -r meta/ee-requirements.txt -r "$kc_requirements" >"$log" 2>&1 \
      || { cat "$log" >&2; exit 1; }
    rm -rf build/lib build/bdist.*  # setuptools' in-tree build leftovers
  ) 9>build/locks/source-build.lock
}

kubernetes_core() {  # Galaxy is out of reach: the copy the `ansible` package bundles
  local src
  src=$("$PYTHON" -c 'import ansible_collections.kubernetes.core as m; print(list(m.__path__)[0])')
  rm -rf "$OUT/kubernetes.core" && cp -a "$src" "$OUT/kubernetes.core"
}

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9  # one build at a time; a waiting caller then finds the cache filled
# overlay (fast: a build step does not copy the whole image); vfs where overlay cannot
# mount, e.g. on an overlay root filesystem (ENVIRONMENT: vfs works everywhere here)
write_podman_conf "${CORAL_EE_STORAGE_DRIVER:-overlay}"
podman info >/dev/null 2>&1 || write_podman_conf vfs
collection
KEY=$(input_hash)
IMAGE=localhost/coral-ee:$KEY
META=$OUT/coral-ee.json
if [ "$FORCE" = 0 ] && [ -f "$META" ] && grep -q "\"key\": \"$KEY\"" "$META" \
    && podman image exists "$IMAGE"; then
  echo "build_ee: $IMAGE is up to date" >&2
else
  for tool in podman buildah mmdebstrap; do
    command -v $tool >/dev/null || { echo "build_ee: needs $tool (run tools/setup.sh)" >&2; exit 1; }
  done
  started=$(date +%s)
  wheelhouse
  kubernetes_core
  base_image
  "$PYTHON" tools/ee_definition.py execution-environment.yml "$OUT/execution-environment.local.yml" \
    --base "$BASE_REF" --collection-dir kubernetes.core=kubernetes.core
  rm -rf "$OUT/context"
  "$BIN/ansible-builder" build -f "$OUT/execution-environment.local.yml" -c "$OUT/context" \
    -t "$IMAGE" --container-runtime podman \
    --build-arg ANSIBLE_GALAXY_CLI_COLLECTION_OPTS=--offline -v 2 >"$OUT/builder.log" 2>&1 \
    || { tail -n 60 "$OUT/builder.log" >&2; exit 1; }
  # keep storage small: earlier EEs and dangling build stages only take space now
  for old in $(podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/coral-ee:' \
               | grep -v ":$KEY\$" || true); do
    podman rmi "$old" >/dev/null 2>&1 || true
  done
  podman image prune -f >/dev/null 2>&1 || true
  seconds=$(( $(date +%s) - started ))
  "$PYTHON" - "$META" <<EOF
import json, sys
json.dump({"image": "$IMAGE", "key": "$KEY", "base": "$BASE_REF", "seconds": $seconds,
           "containers_conf": "$CONTAINERS_CONF", "storage_conf": "$CONTAINERS_STORAGE_CONF"},
          open(sys.argv[1], "w"), indent=1)
EOF
  echo "build_ee: built $IMAGE in ${seconds}s" >&2
fi
exec 9>&-
tr -d '\n' < "$META"; echo
