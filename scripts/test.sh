#!/usr/bin/env bash
# Why: the one test command (README, CI): install what is missing, configure, build, run every test.
# Exits non-zero on any failure. BUILD_DIR (default build/) and JOBS (default: cores) can be set.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}

bash scripts/setup.sh
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD_DIR" -j "$JOBS"
cd "$BUILD_DIR"
ctest --output-on-failure -j "$JOBS" "$@"
