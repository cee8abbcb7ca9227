#!/usr/bin/env bash
# Why: the structure of a training step - kernel launches and host syncs per step (issue 24) - of the
# H100 bench manifests, measured by `moetrain bench` on the CPU backend, which counts as a GPU would
# (engine/core/device.h DeviceCounters; engine/cpu/counting_ops.h). An H100-sized step does not fit a
# CPU's time, so the widths shrink; everything the counts depend on stays: layers and their layout,
# experts, top-K, batch and micro-batch (16 micro-batches of 4 x 2048 tokens), sequence length and
# vocabulary (the LM head runs in chunks of 2^25 / V tokens), one rank. tests/test_counters.cpp checks
# that the counts do not change with the widths. One step each (`bench --count-only`: no timing per op
# family; the first step counts as every later one), a few minutes on 2 cores. Prints one line per
# manifest; rerun it after a change to the step's structure for the "after" figures.
#   scripts/bench_counts.sh [MOETRAIN] [MANIFEST...]
set -euo pipefail
BIN=${1:-build/moetrain}
shift || true
cd "$(dirname "$0")/.."
MANIFESTS=("$@")
[ ${#MANIFESTS[@]} -gt 0 ] || MANIFESTS=(manifests/bench/h100_dense.json manifests/bench/h100_moe_2b.json)
# The widths: model width 32, one head of 8, every hidden width 32 (experts and shared expert 8).
SHRINK=(--set model.d_model=32 --set model.n_heads=1 --set model.head_dim=8 --set model.d_ffn=32)
for m in "${MANIFESTS[@]}"; do
  extra=()
  if grep -q '"moe"' "$m"; then
    extra=(--set model.moe.d_expert=8)
    if grep -q '"d_shared"' "$m"; then extra+=(--set model.moe.d_shared=8); fi
  fi
  out=$("$BIN" bench "$m" "${SHRINK[@]}" "${extra[@]}" --steps 1 --warmup 0 --count-only --json)
  python3 -c '
import json, sys
r = json.loads(sys.argv[2])
b = r["batch"]
print("%s: %g launches, %g host syncs per step (batch %d x %d, %d micro-batches of %d; %s)" % (
    sys.argv[1], r["launches_per_step"], r["host_syncs_per_step"], b["sequences"], b["seq_len"],
    b["micro_batches"], b["micro_batch"], r["device"]))' "$m" "$out"
done
