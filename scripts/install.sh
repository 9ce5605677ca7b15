#!/usr/bin/env bash
# Installs everything Fire-Flyer and its tests need on a Debian 12 machine, then the package itself
# (editable, with the C++ extension compiled for this CPU). Idempotent: re-running skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# prometheus: for its promtool, which checks every service's /metrics in the tests.
APT_PACKAGES=(build-essential pkg-config openmpi-bin libopenmpi-dev fuse3 libfuse3-dev fio
  iproute2 procps psmisc postgresql chromium kubectl systemd prometheus)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install.sh: apt-get install ${missing[*]}"
  $SUDO apt-get update -q
  # kubectl is not in every Debian mirror: install the rest even when it is missing.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
    || $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      $(printf '%s\n' "${missing[@]}" | grep -v '^kubectl$')
  # Only promtool is wanted: stop the Prometheus server the package enables, if we just installed it.
  if printf '%s\n' "${missing[@]}" | grep -qx prometheus && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
fi

PY="${PYTHON:-python3}"
# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
"$PY" -c 'import torch' 2>/dev/null || "$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q 'pybind11>=2.12' 'setuptools>=65' wheel
"$PY" -m pip install -q --no-build-isolation -e '.[test]'
