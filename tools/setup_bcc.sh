#!/bin/sh
# Make bcc tracepoint programs loadable on this machine (see shared ENVIRONMENT.md):
# Debian's python3-bpfcc plus distribution kernel headers, linked in as the running
# kernel's build/source trees (the kernel ships BTF but no headers), and tracefs mounted.
# Idempotent: every step checks before it acts. Needs root.
set -eu

need_install=""
for pkg in python3-bpfcc linux-headers-amd64; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        need_install="$need_install $pkg"
    fi
done
if [ -n "$need_install" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends $need_install || {
        apt-get update && apt-get install -y --no-install-recommends $need_install
    }
fi

# Newest installed header tree (sort -V so 6.1.0-40 beats 6.1.0-9).
build=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)
common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1)
if [ -z "$build" ] || [ -z "$common" ]; then
    echo "setup_bcc: no kernel header tree under /usr/src" >&2
    exit 1
fi

moddir="/lib/modules/$(uname -r)"
mkdir -p "$moddir"
[ -e "$moddir/build" ] || ln -sfn "$build" "$moddir/build"
[ -e "$moddir/source" ] || ln -sfn "$common" "$moddir/source"

mkdir -p /sys/kernel/tracing
if ! [ -e /sys/kernel/tracing/events ]; then
    mount -t tracefs none /sys/kernel/tracing
fi
echo "setup_bcc: ok (build=$build source=$common)"
