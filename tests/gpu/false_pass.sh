#!/usr/bin/env bash
# Why: the first run of the bundle on a GPU machine must not report success without testing anything.
# Each way it could is forced here, on the dry run's bundle (tests/gpu/bundle_dry_run.sh), and each must
# end in a FAIL line and a non-zero exit:
#   1. CUDA answers an error (an old driver: cudaErrorInsufficientDriver) on a machine whose driver lists
#      a GPU (nvidia-smi -L): FAIL with CUDA's error text, not "no GPU, skipped";
#   2. CUDA sees no GPU (cudaErrorNoDevice) while nvidia-smi -L lists one: FAIL;
#   3. a Catch2 test spec that matches no test (CUDA claims one GPU, so the tests run): FAIL, not an empty
#      pass;
#   4. a bundle built with -march=native on another CPU: FAIL before anything runs.
# The CUDA answers come from a preloaded stand-in for cudaGetDeviceCount (fakes/fake_cuda_probe.c), the
# GPU listing from a fake nvidia-smi first on PATH (fakes/nvidia-smi).
#   false_pass.sh BUNDLE_DIR FAKE_CUDA_LIB FAKES_DIR SCRATCH_DIR
set -euo pipefail
bundle="$1" fake_lib="$2" fakes="$3" scratch="$4"
fail() { echo "false-pass test: $*" >&2; exit 1; }
[ -x "$bundle/run.sh" ] || fail "no bundle at $bundle (the dry run test makes it)"
rm -rf "$scratch"
mkdir -p "$scratch"

# run_case NAME BUNDLE ENV...: runs BUNDLE/run.sh in a bare environment with ENV; sets OUT and RC.
run_case() {
  local name="$1" dir="$2"
  shift 2
  set +e
  OUT="$(env -i HOME=/tmp MT_GPU_LOGS="$scratch/$name.logs" "$@" "$dir/run.sh" 2>&1)"
  RC=$?
  set -e
  printf '%s\n' "---- $name (exit $RC)" "$OUT"
}
expect_fail() {  # name check_regex: a FAIL line for the check matching the regex, and a non-zero exit
  local name="$1" line="$2"
  [ "$RC" -ne 0 ] || fail "$name: run.sh exited 0"
  grep -qE "^CHECK $line" <<<"$OUT" || fail "$name: no line /^CHECK $line/"
  grep -qE '^gpu check: [0-9]+ ok, [1-9][0-9]* failed' <<<"$OUT" || fail "$name: the summary counts no failure"
}
smi_path="$fakes:/usr/bin:/bin"

# 1. An old driver on a GPU machine.
run_case cuda_error "$bundle" PATH="$smi_path" LD_PRELOAD="$fake_lib" MT_FAKE_CUDA=error:35 MT_GPU_ONLY='^$'
expect_fail cuda_error 'device FAIL .*cudaErrorInsufficientDriver'

# 2. The driver lists a GPU, CUDA sees none.
run_case no_device "$bundle" PATH="$smi_path" LD_PRELOAD="$fake_lib" MT_FAKE_CUDA=error:100 MT_GPU_ONLY='^$'
expect_fail no_device 'device FAIL nvidia-smi -L lists 1 GPU\(s\) but CUDA finds none.*cudaErrorNoDevice'

# 3. A Catch2 spec that matches nothing, with a GPU claimed (the device itself cannot open here, so the
#    device check fails too; the point is the test check's own FAIL).
run_case no_tests "$bundle" PATH=/usr/bin:/bin LD_PRELOAD="$fake_lib" MT_FAKE_CUDA=count:1 MT_GPU_ONLY='^vs_cpu_selected$' \
  MT_GPU_TESTS='no such test'
expect_fail no_tests 'vs_cpu_selected FAIL'
grep -q "No test cases matched 'no such test'" "$scratch/no_tests.logs/vs_cpu_selected.log" ||
  fail "no_tests: Catch2 did not say that the spec matched nothing"

# 4. A native bundle on another CPU (the copy's BUNDLE.txt names a CPU that is not this one).
cp -a "$bundle" "$scratch/native_bundle"
sed -i 's/^native: .*/native: ON (-march=native)/; s/^cpu: .*/cpu: Some Other CPU (flags 000000000000)/' \
  "$scratch/native_bundle/BUNDLE.txt"
run_case native "$scratch/native_bundle" PATH=/usr/bin:/bin
expect_fail native 'bundle FAIL built with -march=native'
! grep -q '^CHECK device' <<<"$OUT" || fail "native: checks ran after the bundle was refused"
rm -rf "$scratch/native_bundle"

echo "false-pass test: all four forced false passes end in FAIL"
