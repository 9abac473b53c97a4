#!/usr/bin/env bash
# Build the Coral image offline (no registry): a Debian base made with mmdebstrap from
# Debian's packages, the project and its dependencies from a wheelhouse built here with
# `pip wheel`, buildah (chroot isolation, vfs storage) on the repository's Containerfile,
# an OCI archive out. Cached by a content hash of every input, so a CI run builds it once.
#
#   tools/build_image.sh                  build (or reuse) build/image/coral-agent-<version>.oci.tar
#   tools/build_image.sh --import SOCKET  also import it into the containerd at SOCKET (k8s.io)
#   tools/build_image.sh --wheels-only    only the wheelhouse (for `docker build -f Containerfile .`)
#   tools/build_image.sh --force          rebuild even when the cache key matches
#
# Last line of stdout: the metadata JSON (also in build/image/coral-agent-<version>.json):
# archive, ref, base_name, tag, key, version, revision, source_date_epoch.
# Environment: CORAL_IMAGE_DIR (default build/image), SOURCE_DATE_EPOCH (default: the
# commit time of HEAD), CORAL_IMAGE_REVISION (default: git HEAD).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

IMPORT_SOCKET="" WHEELS_ONLY=0 FORCE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --import) IMPORT_SOCKET=$2; shift 2 ;;
    --wheels-only) WHEELS_ONLY=1; shift ;;
    --force) FORCE=1; shift ;;
    *) echo "build_image: unknown argument $1" >&2; exit 2 ;;
  esac
done

OUT=${CORAL_IMAGE_DIR:-$ROOT/build/image}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=$(command -v python3)
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)
BASE_NAME=docker.io/coral/agent  # what the manifests' default `coral/agent:<version>` expands to
REF=$BASE_NAME:$VERSION
REVISION=${CORAL_IMAGE_REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
SOURCE=$(sed -n 's/^repository: *//p' galaxy.yml | head -n1)

# The base root filesystem recipe: Debian packages only (util-linux is Essential; tcpdump
# compiles tap filters to classic BPF).
BASE_SUITE=bookworm
BASE_MIRROR=${CORAL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_INCLUDE=python3,ca-certificates,tcpdump
# The base is cached by its recipe, not by commit: its own fixed epoch for file times.
BASE_EPOCH=1700000000
BASE_RECIPE="mmdebstrap --variant=minbase --include=$BASE_INCLUDE $BASE_SUITE $BASE_MIRROR nodoc $BASE_EPOCH"
BASE_KEY=$(printf '%s' "$BASE_RECIPE" | sha256sum | cut -c1-16)
BASE_REF=localhost/coral-base:$BASE_KEY

# Everything that decides the image's bytes. README.md is the wheel's long description.
input_hash() {
  {
    printf '%s\n' "$BASE_RECIPE" "$VERSION" "$REVISION" "$SOURCE_DATE_EPOCH" "$SOURCE"
    find coral_lib -type f \( -name '*.py' -o -name '*.yaml' -o -name '*.json' -o -name '*.c' \
        -o -name '*.txt' -o -name '*.typed' \) -not -path '*/__pycache__/*' | LC_ALL=C sort \
      | xargs sha256sum
    sha256sum Containerfile .dockerignore pyproject.toml constraints.txt README.md \
      tools/build_image.sh
  } | sha256sum | cut -c1-32
}

BUILDAH=(buildah --root "$OUT/containers/storage" --runroot "$OUT/containers/run"
         --storage-driver vfs)

wheelhouse() {  # $1: where the wheels go
  local wheels=$1 log=$OUT/pip-wheel.log
  rm -rf "$wheels" && mkdir -p "$wheels"
  mkdir -p build/locks
  (  # one in-place build of the checkout at a time (parallel test workers; tests/support/locks.py)
    flock 9
    # pip itself comes along: the Containerfile runs it from its wheel (no pip in the image)
    "$PYTHON" -m pip wheel -q --disable-pip-version-check -c constraints.txt \
      -w "$wheels" ".[postgresql]" pip >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    rm -rf build/lib build/bdist.* # setuptools' in-tree build leftovers
  ) 9>build/locks/source-build.lock
}

base_image() {
  if "${BUILDAH[@]}" inspect --type image "$BASE_REF" >/dev/null 2>&1; then
    return
  fi
  command -v mmdebstrap >/dev/null || { echo "build_image: needs mmdebstrap (tools/setup.sh)" >&2; exit 1; }
  local old  # bases of earlier recipes only take space now
  for old in $("${BUILDAH[@]}" images --format '{{.Name}}:{{.Tag}}' 2>/dev/null \
               | grep '^localhost/coral-base:' || true); do
    "${BUILDAH[@]}" rmi "$old" >/dev/null 2>&1 || true
  done
  local rootfs=$OUT/base-$BASE_KEY.tar
  SOURCE_DATE_EPOCH=$BASE_EPOCH mmdebstrap --quiet --variant=minbase --include="$BASE_INCLUDE" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    "$BASE_SUITE" "$rootfs" "$BASE_MIRROR"
  local ctr mnt
  ctr=$("${BUILDAH[@]}" from scratch)
  mnt=$("${BUILDAH[@]}" mount "$ctr")
  tar -C "$mnt" -xf "$rootfs"
  "${BUILDAH[@]}" umount "$ctr" >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/sh "$ctr"
  "${BUILDAH[@]}" commit --quiet --timestamp "$BASE_EPOCH" --rm "$ctr" "$BASE_REF" >/dev/null
  rm -f "$rootfs"
}

import_archive() {
  ctr --address "$IMPORT_SOCKET" -n k8s.io images import --base-name "$BASE_NAME" "$ARCHIVE" >&2
}

mkdir -p "$OUT"
if [ "$WHEELS_ONLY" = 1 ]; then  # for `docker build -f Containerfile .` at the root
  wheelhouse "$ROOT/build/image/wheels"
  exit 0
fi
# The build context: only the wheelhouse, where the Containerfile expects it.
CONTEXT=$OUT/context

ARCHIVE=$OUT/coral-agent-$VERSION.oci.tar
META=$OUT/coral-agent-$VERSION.json
exec 9>"$OUT/.lock"
flock 9  # one build at a time; a waiting caller then finds the cache filled
KEY=$(input_hash)
if [ "$FORCE" = 0 ] && [ -f "$ARCHIVE" ] && [ -f "$META" ] && grep -q "\"key\": \"$KEY\"" "$META"; then
  echo "build_image: $ARCHIVE is up to date (key $KEY)" >&2
else
  for tool in buildah mmdebstrap; do
    command -v $tool >/dev/null || { echo "build_image: needs $tool (run tools/setup.sh)" >&2; exit 1; }
  done
  started=$(date +%s)
  rm -rf "$CONTEXT"
  wheelhouse "$CONTEXT/build/image/wheels"
  base_image
  "${BUILDAH[@]}" bud --quiet --isolation chroot --pull-never --timestamp "$SOURCE_DATE_EPOCH" \
    --build-arg BASE="$BASE_REF" --build-arg VERSION="$VERSION" \
    --build-arg REVISION="$REVISION" --build-arg SOURCE="$SOURCE" \
    --build-arg CREATED="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)" \
    -t "$REF" -f "$ROOT/Containerfile" "$CONTEXT" >&2
  rm -f "$ARCHIVE.tmp"
  "${BUILDAH[@]}" push --quiet "$REF" "oci-archive:$ARCHIVE.tmp:$VERSION" >&2
  mv "$ARCHIVE.tmp" "$ARCHIVE"
  # keep storage small: the built image lives on in the archive; the base stays cached
  "${BUILDAH[@]}" rmi "$REF" >/dev/null 2>&1 || true
  "$PYTHON" - "$META" <<EOF
import json, sys
json.dump({"archive": "$ARCHIVE", "ref": "$REF", "base_name": "$BASE_NAME", "tag": "$VERSION",
           "key": "$KEY", "version": "$VERSION", "revision": "$REVISION",
           "source_date_epoch": int("$SOURCE_DATE_EPOCH"), "base": "$BASE_REF"},
          open(sys.argv[1], "w"), indent=1)
EOF
  echo "build_image: built $ARCHIVE in $(( $(date +%s) - started ))s" >&2
fi
exec 9>&-
[ -z "$IMPORT_SOCKET" ] || import_archive
tr -d '\n' < "$META"; echo
