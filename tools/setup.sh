#!/usr/bin/env bash
# Set up everything Coral needs on a fresh Debian 12 machine, as root: Debian packages,
# the virtualenv .venv with coral-lib and the pinned Python packages, and the coral.mesh
# collection linked where ansible finds it. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3 python3-venv python3-dev gcc make git iproute2 util-linux procps
              containerd runc busybox-static tcpdump
              mmdebstrap buildah            # `make image` (tools/build_image.sh)
              podman                        # AWX execution environment (tools/build_ee.sh, tests/awx)
              containernetworking-plugins   # pod networking for the test pod runner
              postgresql                    # colony replicas' shared database (tests run initdb)
              systemd-container openssh-client)  # tests/hosts: systemd hosts over SSH
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need root to install Debian packages: ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# eBPF tracing (coral trace): bcc from Debian plus kernel headers. Optional: where it
# cannot be set up, runtime detection reports can_trace false with the reason.
if [ "$(id -u)" = 0 ]; then
  bash tools/setup_bcc.sh || echo "setup: eBPF tracing not available here (see above)" >&2
fi
# The distribution's containerd and postgresql services are not used (tests start private
# instances with their own data directories).
systemctl disable --now containerd >/dev/null 2>&1 || true
systemctl disable --now postgresql >/dev/null 2>&1 || true

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -c constraints.txt -r requirements-dev.txt
log=$(mktemp)  # the editable build is chatty; show its output only when it fails
.venv/bin/pip install -q -c constraints.txt --no-deps -e . >"$log" 2>&1 || { cat "$log"; exit 1; }
rm -f "$log"

# The repository root is the collection coral.mesh; link it where ansible.cfg looks.
mkdir -p .collections/ansible_collections/coral
ln -sfn ../../.. .collections/ansible_collections/coral/mesh
echo "setup: done ($(.venv/bin/coral --help >/dev/null && echo coral ok), $(.venv/bin/ansible --version 2>/dev/null | sed -n 1p))"
