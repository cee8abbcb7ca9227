#!/usr/bin/env bash
# Why: the GPU bundle must not rot between the rare days a GPU is lent. This packs it from the test's
# build (scripts/gpu_check.sh prepare with MT_BUNDLE_FROM: no second build) and runs its run.sh in a bare
# environment with every GPU hidden: every GPU check must say SKIPPED, the bundle's own Open MPI must
# start two ranks, the CUDA libraries must be found, the bundle (this build, -march=native or not) must be
# accepted on the CPU it was built on, and the whole must exit 0 quickly; then again with the bundle's C
# library forced (exe.sh). tests/gpu/false_pass.sh then forces every way it could pass falsely.
#   bundle_dry_run.sh BUILD_DIR BUNDLE_DIR
set -euo pipefail
build="$1" dir="$2"
fail() { echo "bundle dry run: $*" >&2; exit 1; }

MT_BUNDLE_FROM="$build" scripts/gpu_check.sh prepare "$dir"
size_kib="$(du -sk "$dir" | cut -f1)"
[ "$size_kib" -le $((60 * 1024)) ] || fail "bundle is $((size_kib / 1024)) MiB (limit 60)"

start=$SECONDS
set +e
out="$(env -i PATH=/usr/bin:/bin HOME=/tmp CUDA_VISIBLE_DEVICES= MT_GPU_LOGS="$dir.logs" "$dir/run.sh")"
rc=$?
set -e
echo "$out"
[ "$rc" -eq 0 ] || fail "run.sh exited $rc"
[ $((SECONDS - start)) -lt 120 ] || fail "the dry run took $((SECONDS - start)) s (limit 120)"
last="$(tail -n 1 <<<"$out")"
[[ "$last" =~ ^gpu\ check:\ [0-9]+\ ok,\ 0\ failed,\ [0-9]+\ skipped$ ]] || fail "last line: $last"
grep -q '^CHECK bundle ok' <<<"$out" || fail "the bundle was refused on the CPU it was built on"
grep -q '^CHECK libraries ok' <<<"$out" || fail "the CUDA libraries were not found"
grep -q '^CHECK mpirun ok' <<<"$out" || fail "the bundled mpirun did not start two ranks"
for name in device vs_cpu_forward_backward vs_cpu_ops_every_op_case layout_np4_tp2_ep2_bf16 attention bench_h100_dense \
  bench_h100_moe_2b; do
  grep -qE "^CHECK $name[a-z0-9_]* SKIPPED" <<<"$out" || fail "check $name is not SKIPPED"
done
# The Catch2 tests: the model's, the op cases (one test: tests/op_harness.h) and the GPU's own properties.
n_ops="$(grep -c '^CHECK vs_cpu_' <<<"$out")"
[ "$n_ops" -ge 6 ] || fail "only $n_ops GPU tests listed"
# Once more through the bundle's own C library (what a machine with an older glibc gets).
out2="$(env -i PATH=/usr/bin:/bin HOME=/tmp CUDA_VISIBLE_DEVICES= MT_GPU_BUNDLED_GLIBC=1 MT_GPU_LOGS="$dir.logs" "$dir/run.sh")" ||
  fail "run.sh with the bundled glibc failed: $out2"
grep -q "^CHECK glibc ok .*exe.sh" <<<"$out2" || fail "the bundled glibc was not used"
grep -q '^CHECK mpirun ok' <<<"$out2" || fail "mpirun with the bundled glibc did not start two ranks"
grep -q '^CHECK device SKIPPED' <<<"$out2" || fail "the probe did not run with the bundled glibc"
echo "bundle dry run: $((size_kib / 1024)) MiB, $n_ops GPU tests, exit 0 in $((SECONDS - start)) s"
