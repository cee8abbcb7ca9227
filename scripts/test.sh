#!/usr/bin/env bash
# Why: the one test command (README, CI): install what is missing, configure, build, run every test.
# Exits non-zero on any failure. BUILD_DIR (default build/) and JOBS (default: cores) can be set.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}

bash scripts/setup.sh
# ccache (installed by setup.sh) makes a rebuild of unchanged sources, or of another checkout, cheap.
LAUNCH=()
if command -v ccache > /dev/null; then
  LAUNCH=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "${LAUNCH[@]}"
cmake --build "$BUILD_DIR" -j "$JOBS"
cd "$BUILD_DIR"
ctest --output-on-failure -j "$JOBS" "$@"
