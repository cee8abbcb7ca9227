#!/usr/bin/env bash
# Why: builds the libFuzzer targets (tests/fuzz, clang + ASan + UBSan, own build folder) and runs each
# for SECONDS (default 60) from its committed seed corpus tests/fuzz/corpus/TARGET/, which also holds
# every input that ever crashed a reader (regression cases, run first). New interesting inputs go to
# $FUZZ_BUILD/corpus/TARGET (not committed); a crash is written to $FUZZ_BUILD/crash-TARGET-* and
# fails the script: copy it into tests/fuzz/corpus/TARGET/ when fixed.
#   scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/fuzz.sh 120 manifest
# Environment: FUZZ_BUILD (default build-fuzz), FUZZ_JOBS (build jobs, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(manifest index shard tokenizer safetensors checkpoint)
BUILD=${FUZZ_BUILD:-build-fuzz}
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (scripts/setup.sh installs clang and libfuzzer-14-dev)" >&2; exit 2; }
LAUNCHER=()
command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$BUILD" -DMOETRAIN_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang "${LAUNCHER[@]}" >/dev/null
cmake --build "$BUILD" -j "${FUZZ_JOBS:-2}" --target "${TARGETS[@]/#/fuzz_}" >/dev/null
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=0
printf '%-12s %10s %8s %8s %7s\n' target executions exec/s cov ft
for t in "${TARGETS[@]}"; do
  mkdir -p "$BUILD/corpus/$t"
  log="$BUILD/fuzz_$t.log"
  if "$BUILD/tests/fuzz/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=4096 -max_len=65536 \
       -artifact_prefix="$BUILD/crash-$t-" -print_final_stats=1 "$BUILD/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    printf '%-12s %10s %8s %8s %7s\n' "$t" "$runs" "$rate" "${cov:-?}" "${ft:-?}"
  else
    failed=1
    echo "fuzz_$t: FOUND A FAILURE (log: $log; input: $(ls "$BUILD"/crash-"$t"-* 2>/dev/null | head -n 1))" >&2
    grep -m 5 -E 'ERROR|runtime error|uncaught|deadly' "$log" >&2 || tail -n 20 "$log" >&2
  fi
done
exit $failed
