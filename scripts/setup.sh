#!/usr/bin/env bash
# Why: one idempotent entry point that puts every build, test and data dependency of moetrain on a
# Debian/Ubuntu machine. It installs only what is missing, as root or through sudo, and never touches
# the CUDA toolkit (found, not installed: the build goes CPU-only without it).
set -euo pipefail
trap 'bash "$(dirname "$0")/setup_js.sh"' EXIT  # then the JS reference of the BPE tests (never fails)

PACKAGES=(
  build-essential cmake pkg-config git zlib1g-dev libzstd-dev zstd ccache
  libopenmpi-dev openmpi-bin
  libcli11-dev nlohmann-json3-dev catch2 libopenblas-dev libopenblas-openmp-dev
  dict-gcide
  python3 python3-matplotlib python3-numpy
  nodejs
  clang libfuzzer-14-dev
  slurm-wlm munge
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# npm comes with some nodejs builds (NodeSource) and is its own package in Debian's.
command -v npm > /dev/null || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when a first install attempt cannot find a package.
if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; then
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
