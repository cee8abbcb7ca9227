#!/bin/bash
# Why: processes that share cores must not collapse (OpenMP teams that outnumber the cores spin against
# each other: ~100x slower). This times whole training steps of a tiny MoE (manifests/bench/
# cpu_tiny_moe.json) as steps per 15 s: one run alone, two runs at once, and one `mpirun -np 2` job
# (two ranks on this node), each with the binary's default thread count (OMP_NUM_THREADS unset).
# Usage: scripts/bench_shared_cores.sh [MOETRAIN] [MANIFEST] [STEPS]
set -euo pipefail
BIN=${1:-build/moetrain}
M=${2:-manifests/bench/cpu_tiny_moe.json}
STEPS=${3:-200}
unset OMP_NUM_THREADS
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Steps per 15 s from `moetrain bench --json` files.
rate() { python3 -c 'import json,sys; print(" ".join("%.0f" % (15 / json.load(open(f))["step_seconds"]) for f in sys.argv[1:]))' "$@"; }

"$BIN" bench "$M" --steps "$STEPS" --json > "$TMP/alone.json"
echo "alone:             $(rate "$TMP/alone.json") steps in 15 s"

"$BIN" bench "$M" --steps "$STEPS" --json > "$TMP/a.json" &
pa=$!
"$BIN" bench "$M" --steps "$STEPS" --json > "$TMP/b.json" &
pb=$!
wait "$pa" "$pb"
echo "two runs at once:  $(rate "$TMP/a.json" "$TMP/b.json") steps in 15 s (each)"

if command -v mpirun > /dev/null; then
  extra=()
  [ "$(id -u)" = 0 ] && extra=(--allow-run-as-root)
  # Rank 0 prints the JSON; each rank steps half the batch (in one micro-batch: the manifest's may be
  # larger than half), so its steps are the job's steps, gradient all-reduce included.
  mpirun -np 2 --oversubscribe "${extra[@]}" "$BIN" bench "$M" --steps "$STEPS" --set train.micro_batch_size=auto \
    --json > "$TMP/mpi.json"
  echo "mpirun -np 2:      $(rate "$TMP/mpi.json") steps in 15 s (the job)"
fi
