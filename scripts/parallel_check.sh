#!/usr/bin/env bash
# Why: one command that shows, as a table for a report or a review, how far each parallel layout is
# from the single-process run (the contract of DESIGN.md "Parallelism") and what a step costs. It runs
# the cases of tests/mpi/layouts.sh (the same runs as ctest -L mpi) and reads compare_runs' verdicts
# and each run's metrics.jsonl.
# Usage: scripts/parallel_check.sh [BUILD_DIR]   (default: build; needs moetrain and compare_runs
# built there). Runs go to BUILD_DIR/parallel_check. Exits 1 when a layout does not match, when
# compare_runs accepts a run it should reject, or when the rank-kill case fails.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd) || { echo "parallel_check.sh: no build folder ${1:-$ROOT/build}" >&2; exit 2; }
cd "$ROOT"
BIN=$BUILD/moetrain
CMP=$BUILD/tests/mpi/compare_runs
TMP=$BUILD/parallel_check
[ -x "$BIN" ] && [ -x "$CMP" ] || { echo "parallel_check.sh: build moetrain and compare_runs in $BUILD first" >&2; exit 2; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
LAYOUTS="bash tests/mpi/layouts.sh"

# field NAME LINE: the value after "NAME=" in LINE.
field() { sed -n "s/.*[ ]$1=\\([^ ]*\\).*/\\1/p" <<< "$2"; }

# Mean milliseconds per step of a run over its logged steps after the first (tokens per step over
# tok_per_s; with log.every=1 each line times one step).
step_ms() {
  awk -F'[,:{}]' '/"loss"/ {
      for (i = 1; i < NF; ++i) {
        if ($i == "\"step\"") s = $(i + 1)
        if ($i == "\"tokens\"") t = $(i + 1)
        if ($i == "\"tok_per_s\"") r = $(i + 1)
      }
      if (s == 1) per = t
      else if (r > 0) { sum += 1000 * per / r; n++ }
    }
    END { if (n) printf "%.1f", sum / n; else printf "-" }' "$1/metrics.jsonl"
}

$LAYOUTS "$BIN" "$CMP" "$TMP" setup > /dev/null || { echo "parallel_check.sh: setup failed" >&2; exit 1; }
ref_ms=$(step_ms "$TMP/reference")
status=0
echo "| layout | ranks | max rel. loss diff | max rel. grad-norm diff | max rel. param diff (tensor) | ms / step | result |"
echo "|---|---|---|---|---|---|---|"
echo "| single process (reference) | 1 | - | - | - | $ref_ms | - |"
for c in $($LAYOUTS "$BIN" "$CMP" "$TMP" list) resume resume_single buckets; do
  out=$($LAYOUTS "$BIN" "$CMP" "$TMP" "$c" 2>&1)
  rc=$?
  head=$(grep -m1 '^layouts.sh: ' <<< "$out")
  cmp=$(grep -m1 '^compare_runs: ' <<< "$out")
  layout=$(sed -n 's/^layouts.sh: [^ ]* ranks=[^ ]* \(.*\)/\1/p' <<< "$head")
  ranks=$(field ranks "$head")
  worst=$(sed -n 's/.* param_diff=[^ ]* (\([^,]*\),.*/\1/p' <<< "$cmp")
  result=ok
  if (( rc != 0 )); then
    result="**FAIL** (exit $rc)"
    status=1
  fi
  if [[ -z $cmp ]]; then
    echo "| $c: ${layout:-?} | ${ranks:-?} | - | - | - | - | $result: $(tail -n1 <<< "$out") |"
    continue
  fi
  echo "| $c: $layout | $ranks | $(field loss_diff "$cmp") | $(field grad_norm_diff "$cmp") |" \
       "$(field param_diff "$cmp") ($worst) | $(step_ms "$TMP/$c") | $result |"
done

# The checks of the judge and of failure handling, one line each.
echo
for c in negative kill; do
  out=$($LAYOUTS "$BIN" "$CMP" "$TMP" "$c" 2>&1)
  rc=$?
  if (( rc != 0 )); then
    status=1
    echo "- $c: **FAIL**: $(grep -m1 '^FAIL' <<< "$out")"
  else
    echo "- $c: $(grep -m1 '^PASS' <<< "$out" | sed 's/^PASS: //')"
  fi
done
exit $status
