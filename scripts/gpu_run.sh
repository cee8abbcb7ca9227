#!/usr/bin/env bash
# Why: the run.sh of the GPU bundle (scripts/gpu_check.sh prepare DIR copies it to DIR/run.sh): on a
# bare GPU machine, without building, one call checks the CUDA backend: every GPU op and the whole
# model against the CPU, the tp / dp / ep layouts (MPI staging, and NCCL with a GPU per rank), attention
# (every kernel against the CPU over several shapes) and the speed of the bench manifests. Each check has
# its own time limit inside a total budget (MT_GPU_BUDGET seconds, default 330), prints
# `CHECK <name> ok|FAIL|SKIPPED <figures>` as soon as it ends (so a run that is cut off still reports
# what finished) and the last line is `gpu check: N ok, N failed, N skipped`; the exit status is 0 iff
# nothing failed. Logs go to MT_GPU_LOGS (default $OUT/moetrain_gpu_logs when $OUT is set, else
# /tmp/moetrain_gpu_logs).
#
# No false pass: a check is ok only when its process exits 0 AND prints its own success line (Catch2's
# "Passed ... with N assertions", N > 0, run with -w NoTests; the jobs' "passed"); a bundle built with
# -march=native for another CPU is refused; a CUDA error on a machine with an NVIDIA GPU (device files,
# or `nvidia-smi -L` listing one) is a FAIL with CUDA's text, and so is a GPU test process that says "no
# GPU" after the probe found one. Only a machine with no NVIDIA GPU at all gets SKIPPED GPU checks.
#
# Reruns on the GPU machine: MT_GPU_ONLY=REGEX runs only the GPU checks whose name matches (the bundle,
# library, device and mpirun checks always run); MT_GPU_TESTS=SPEC runs moetrain_gpu_tests once with
# that Catch2 test spec (check vs_cpu_selected) instead of once per test. `run.sh --cpu-identity` prints
# the CPU identity that BUNDLE.txt records (scripts/gpu_check.sh asks it) and exits.
set -uo pipefail
cpu_identity() {  # the CPU model and a digest of its instruction-set flags (what -march=native keys on)
  printf '%s (flags %s)' "$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo 2>/dev/null | head -1)" \
    "$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | sha256sum | cut -c1-12)"
}
if [ "${1:-}" = --cpu-identity ]; then cpu_identity; echo; exit 0; fi
B="$(cd "$(dirname "$0")" && pwd)"
LOGS="${MT_GPU_LOGS:-${OUT:-/tmp}/moetrain_gpu_logs}"
BUDGET="${MT_GPU_BUDGET:-330}"
ONLY="${MT_GPU_ONLY:-}"
TESTS="${MT_GPU_TESTS:-}"
mkdir -p "$LOGS"
N_OK=0 N_FAIL=0 N_SKIP=0

report() {  # name status figures...
  local name="$1" status="$2"
  shift 2
  printf 'CHECK %s %s %s\n' "$name" "$status" "$*"
  case "$status" in ok) N_OK=$((N_OK + 1)) ;; FAIL) N_FAIL=$((N_FAIL + 1)) ;; *) N_SKIP=$((N_SKIP + 1)) ;; esac
}
finish() {
  echo "logs: $LOGS; ${SECONDS}s in all"
  echo "gpu check: $N_OK ok, $N_FAIL failed, $N_SKIP skipped"
  [ "$N_FAIL" = 0 ]
  exit
}
slug() { tr 'A-Z' 'a-z' <<<"$1" | sed 's/[^a-z0-9]\{1,\}/_/g; s/^_//; s/_$//' | cut -c1-60; }
selected() { [ -z "$ONLY" ] || [[ "$1" =~ $ONLY ]]; }
# run LOG LIMIT CMD...: runs CMD with its output in LOG under min(LIMIT, budget left); sets RC and SECS.
run() {
  local log="$1" limit="$2" left=$((BUDGET - SECONDS))
  shift 2
  [ "$left" -lt "$limit" ] && limit="$left"
  if [ "$limit" -le 0 ]; then RC=124 SECS=0; echo "out of time budget" >"$log"; return; fi
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" >"$log" 2>&1 </dev/null
  RC=$? SECS=$((SECONDS - t0))
}
# verdict NAME LOG FIGURES PASSED_REGEX: the verdict of a finished run(). ok needs exit 0 and a line of
# the log matching PASSED_REGEX; 77 is a process's "no GPU visible", a FAIL once the probe found one.
verdict() {
  local name="$1" log="$2" figures="$3" passed="$4"
  case "$RC" in
    0)
      if grep -qE "$passed" "$log"; then report "$name" ok "$figures (${SECS}s)"
      else report "$name" FAIL "exit 0 without its success line (/$passed/): it checked nothing; log $log"; fi ;;
    77)
      if [ "$GPU" != 0 ]; then report "$name" FAIL "says no GPU is visible, but the probe found $GPU; log $log"
      else report "$name" SKIPPED "no GPU visible"; fi ;;
    124 | 137) report "$name" FAIL "timed out after ${SECS}s; log $log" ;;
    *) report "$name" FAIL "exit $RC: $(grep -m1 -iE 'error|fail|mismatch|no test' "$log" | cut -c1-200); log $log" ;;
  esac
}

# ---- the bundle: built for any x86-64 CPU, or (the ctest dry run) natively for this very CPU --------------
native="$(sed -n 's/^native: \([A-Za-z]*\).*/\1/p' "$B/BUNDLE.txt" 2>/dev/null)"
built_on="$(sed -n 's/^cpu: //p' "$B/BUNDLE.txt" 2>/dev/null)"
source_line="$(sed -n 's/^source: //p' "$B/BUNDLE.txt" 2>/dev/null)"
if [ "$native" = OFF ]; then
  report bundle ok "portable x86-64 build (MOETRAIN_NATIVE=OFF) of ${source_line:-unknown source}"
elif [ -n "$built_on" ] && [ "$built_on" = "$(cpu_identity)" ]; then
  report bundle ok "native build (-march=native) on the CPU it was built on: $built_on; ${source_line:-unknown source}"
else
  report bundle FAIL "built with -march=native (native: ${native:-not recorded}) on '${built_on:-unknown}', this CPU is" \
    "'$(cpu_identity)': its executables may stop on an illegal instruction; pack it with scripts/gpu_check.sh prepare," \
    "which always builds with MOETRAIN_NATIVE=OFF"
  finish
fi

# ---- the CUDA libraries: the toolkit's folder, the driver's, Python wheels (nvidia/*/lib), ldconfig ------
dirs=()
for d in "${CUDA_HOME:-/nonexistent}/lib64" /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib \
  /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  [ -d "$d" ] && dirs+=("$d")
done
# Site-packages folders: the Python on PATH says where its own are; conda, virtual environments and the
# system Pythons' are looked at too, as run.sh may start with a PATH that holds none of them.
sites=()
for py in python3 python; do
  command -v "$py" >/dev/null || continue
  while read -r sp; do sites+=("$sp"); done < <("$py" -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))' 2>/dev/null)
  break
done
shopt -s nullglob
for sp in "${VIRTUAL_ENV:-/nonexistent}"/lib/python3*/site-packages "${CONDA_PREFIX:-/nonexistent}"/lib/python3*/site-packages \
  /opt/conda/lib/python3*/site-packages /opt/conda/envs/*/lib/python3*/site-packages /opt/*/.venv/lib/python3*/site-packages \
  /opt/*/lib/python3*/site-packages /opt/venv*/lib/python3*/site-packages /root/.venv/lib/python3*/site-packages \
  /venv/lib/python3*/site-packages /usr/local/lib/python3*/dist-packages /usr/local/lib/python3*/site-packages \
  /usr/lib/python3/dist-packages; do
  sites+=("$sp")
done
for sp in "${sites[@]}"; do
  for d in "$sp"/nvidia/*/lib; do [ -d "$d" ] && [[ " ${dirs[*]} " != *" $d "* ]] && dirs+=("$d"); done
done
shopt -u nullglob
found=() libpath=""
for so in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libnccl.so.2 libcudnn.so.9; do
  where=""
  for d in "${dirs[@]}"; do [ -e "$d/$so" ] && { where="$d"; break; }; done
  [ -z "$where" ] && where="$(ldconfig -p 2>/dev/null | awk -v s="$so" '$1 == s {print $NF; exit}' | xargs -r dirname)"
  found+=("${so%%.so*}=${where:-MISSING}")
  [ -n "$where" ] && [[ ":$libpath:" != *":$where:"* ]] && libpath="${libpath:+$libpath:}$where"
done
# Every nvidia wheel folder too: cuDNN's engines load the cuBLAS / NVRTC of their own CUDA version.
for d in "${dirs[@]}"; do [[ ":$libpath:" != *":$d:"* ]] && libpath="${libpath:+$libpath:}$d"; done
# The bundle's gzipped libraries (scripts/gpu_check.sh), unpacked for this run.
UNPACKED="$(mktemp -d "${TMPDIR:-/tmp}/moetrain_bundle.XXXXXX")"
trap 'rm -rf "$UNPACKED"' EXIT
for z in "$B"/lib/*.gz; do [ -e "$z" ] && gzip -dc "$z" >"$UNPACKED/$(basename "$z" .gz)"; done
export LD_LIBRARY_PATH="$B/lib:$UNPACKED:$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [[ "${found[*]}" == *MISSING* ]]; then report libraries FAIL "${found[*]}"
else report libraries ok "${found[*]}"; fi

# ---- the C library: the machine's, or the bundle's through exe.sh where the machine's is older ---------
need="$(sed -n 's/^needs: \([0-9.]*\) or newer glibc.*/\1/p' "$B/BUNDLE.txt")"
have="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
X=()
if [ "${MT_GPU_BUNDLED_GLIBC:-0}" = 1 ] || [ -z "$have" ] ||
   [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
  X=("$B/exe.sh")
  report glibc ok "machine ${have:-unknown}, bundle needs $need: the bundle's C library (exe.sh)"
else
  report glibc ok "machine $have, bundle needs $need"
fi

# ---- Open MPI from the bundle (relocated: components, help files, PMIx) ----------------------------------
export OPAL_PREFIX="$B/mpi" PMIX_INSTALL_PREFIX="$B/mpi" PMIX_PREFIX="$B/mpi"
export OMPI_MCA_mca_base_component_path="$B/mpi/openmpi3" PMIX_MCA_mca_base_component_path="$B/mpi/pmix"
export OMPI_MCA_mca_base_component_show_load_errors=0 PMIX_MCA_mca_base_component_show_load_errors=0
export OPAL_PKGDATADIR="$B/mpi/share/openmpi" PMIX_PKGDATADIR="$B/mpi/share/pmix"
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_btl_vader_backing_directory=/tmp OMPI_MCA_btl_base_warn_component_unused=0 OMPI_MCA_plm=isolated
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export HWLOC_PLUGINS_PATH="$B/mpi/hwloc" OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
MPIRUN=("${X[@]}" "$B/mpi/bin/mpirun" --oversubscribe)

# ---- the device: CUDA's answer, weighed against the driver's own (device files, nvidia-smi -L) -----------
smi_gpus=0
if command -v nvidia-smi >/dev/null; then smi_gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU [0-9]')"; fi
GPU=0
run "$LOGS/device.log" 30 "${X[@]}" "$B/bin/gpu_attention_job" --probe
cuda_says="$(sed -n 's/^cuda: //p' "$LOGS/device.log" | head -1)"
count="$(sed -n 's/^gpus: //p' "$LOGS/device.log" | head -1)"
what="$(sed -n 's/^device //p' "$LOGS/device.log" | head -1 | cut -c1-240)"
case "$RC" in
  0)
    GPU="$count"
    smi="$(nvidia-smi --query-gpu=driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
    report device ok "$what; ${GPU} GPU(s)${smi:+; driver, memory: $smi}" ;;
  1)
    GPU="$count"
    report device FAIL "CUDA counts $count GPU(s) but: $what; log $LOGS/device.log" ;;
  3) report device FAIL "$what; log $LOGS/device.log" ;;
  77)
    if [ "$smi_gpus" -gt 0 ]; then
      report device FAIL "nvidia-smi -L lists $smi_gpus GPU(s) but CUDA finds none: cudaGetDeviceCount: ${cuda_says:-?}" \
        "(CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}); log $LOGS/device.log"
    else
      report device SKIPPED "$what"
    fi ;;
  *) report device FAIL "the probe exited $RC: $(grep -m1 -iE 'error|fail' "$LOGS/device.log" | cut -c1-200); log $LOGS/device.log" ;;
esac
gpu_check() {  # name [min GPUs]: false (and a report) when not selected or short of GPUs
  selected "$1" || return 1
  if [ "$GPU" = 0 ]; then report "$1" SKIPPED "no GPU visible"; return 1; fi
  if [ "$GPU" -lt "${2:-1}" ]; then report "$1" SKIPPED "$GPU GPU(s): needs ${2} (NCCL needs a GPU per rank)"; return 1; fi
  return 0
}

# ---- the bundle's MPI starts ranks (no GPU needed) ----------------------------------------------------
run "$LOGS/mpirun.log" 60 "${MPIRUN[@]}" -np 2 "${X[@]}" "$B/bin/gpu_attention_job" --probe
if [ "$(grep -c '^probe rank [01] of 2' "$LOGS/mpirun.log")" = 2 ]; then
  report mpirun ok "2 ranks started by the bundled Open MPI (${SECS}s)"
else
  report mpirun FAIL "exit $RC, not 2 ranks: $(grep -m1 -iE 'error|not|fail' "$LOGS/mpirun.log" | cut -c1-160); log $LOGS/mpirun.log"
fi

# ---- the whole model, then every op, against the CPU (the Catch2 tests, one process each) ----------------
T="$B/bin/moetrain_gpu_tests"
# Catch2 (2.13 takes one -w): -w NoTests makes a spec that matches no test an error; the success line
# must count at least one assertion.
catch2() {  # name spec
  local log="$LOGS/$1.log"
  run "$log" 120 "${X[@]}" "$T" --reporter compact -w NoTests "$2"
  verdict "$1" "$log" "$(grep -m1 -E '^(Passed|All tests)' "$log" | cut -c1-100)" \
    '^Passed (all )?[0-9]+ test cases? with [1-9][0-9]* assertions?\.'
}
if [ -n "$TESTS" ]; then
  gpu_check vs_cpu_selected && catch2 vs_cpu_selected "$TESTS"
else
  mapfile -t tests < <("${X[@]}" "$T" --list-test-names-only 2>/dev/null | sed '/^$/d')
  model=() ops=()
  for t in "${tests[@]}"; do
    if [[ "$t" == *model* || "$t" == *training* ]]; then model+=("$t"); else ops+=("$t"); fi
  done
  [ "${#tests[@]}" -gt 0 ] || report gpu_tests FAIL "moetrain_gpu_tests lists no tests"
  for t in "${model[@]}" "${ops[@]}"; do
    name="vs_cpu_$(slug "${t#gpu }")"
    gpu_check "$name" || continue
    catch2 "$name" "$(sed 's/[][,\\*~"]/\\&/g' <<<"$t")"
  done
fi

# ---- layouts: ranks sharing one GPU through MPI staging; then NCCL, a GPU per rank ------------------------
layout_passed='^gpu_layout_job tp [0-9]+ ep [0-9]+ dp [0-9]+ [a-z0-9]+: passed$'
for l in "2 2 1 fp32" "2 1 2 fp32" "4 2 2 fp32" "2 2 1 bf16" "4 2 2 bf16"; do
  set -- $l
  name="layout_np$1_tp$2_ep$3_$4"
  gpu_check "$name" || continue
  run "$LOGS/$name.log" 120 env MOETRAIN_COMM=mpi "${MPIRUN[@]}" -np "$1" "${X[@]}" "$B/bin/gpu_layout_job" "$2" "$3" "$4"
  verdict "$name" "$LOGS/$name.log" "MPI staging; $(grep -m1 'loss' "$LOGS/$name.log" | sed 's/^ *//' | cut -c1-100)" "$layout_passed"
done
# NCCL (MOETRAIN_COMM=nccl: never a silent fall-back to MPI), each check the group it is about: tp
# all-reduce, dp gradient all-reduce after the backward and during it (the side stream), ep all-to-all.
for l in "tp2:2 2 1 fp32::tp nccl" "tp2_bf16:2 2 1 bf16::tp nccl" "dp2_allreduce:2 1 1 fp32::dp nccl" \
  "dp2_overlap:2 1 1 fp32 overlap:dp nccl" "ep2_alltoall:2 1 2 fp32::ep nccl"; do
  IFS=: read -r tag args extra group <<<"$l"
  set -- $args
  name="layout_nccl_$tag"
  gpu_check "$name" "$1" || continue
  run "$LOGS/$name.log" 120 env MOETRAIN_COMM=nccl "${MPIRUN[@]}" -np "$1" "${X[@]}" "$B/bin/gpu_layout_job" "$2" "$3" "$4" $extra
  if [ "$RC" = 0 ] && ! grep -q "^comm: .*$group" "$LOGS/$name.log"; then
    report "$name" FAIL "passed, but its $group group is not NCCL: $(grep -m1 '^comm:' "$LOGS/$name.log"); log $LOGS/$name.log"
    continue
  fi
  verdict "$name" "$LOGS/$name.log" "$(grep -m1 '^comm:' "$LOGS/$name.log" | cut -c1-80); $(grep -m1 'grad norm' "$LOGS/$name.log" | sed 's/^ *//' | cut -c1-80)" "$layout_passed"
done

# ---- attention alone: every kernel against the CPU over several shapes, then TFLOP/s at training size -----
if gpu_check attention; then
  run "$LOGS/attention.log" 150 "${X[@]}" "$B/bin/gpu_attention_job"
  # The job prints its own CHECK lines; a job that died, or printed none, is reported as a failure.
  n=0
  while read -r _ name status rest; do report "$name" "$status" "$rest"; n=$((n + 1)); done < <(grep '^CHECK ' "$LOGS/attention.log")
  if [ "$RC" != 0 ]; then verdict attention "$LOGS/attention.log" "" '^$'
  elif [ "$n" = 0 ]; then report attention FAIL "exit 0 without a CHECK line: it checked nothing; log $LOGS/attention.log"; fi
fi

# ---- bench: tokens/s, MFU, time per op family, peak memory ---------------------------------------------------
for cfg in h100_dense h100_moe_2b; do
  name="bench_$cfg"
  gpu_check "$name" || continue
  log="$LOGS/$name.json"
  run "$log" 150 "${X[@]}" "$B/bin/moetrain" bench "$B/manifests/bench/$cfg.json" --device cuda --steps 2 --warmup 1 \
    --set train.batch_size=16 --json
  num() { sed -n "s/^ *\"$1\": \([-0-9.e+]*\).*/\1/p" "$log" | head -1; }
  fams="$(awk -F'"' '/"family"/ {f=$4} /"seconds"/ && f {split($3, a, /[:,]/); printf "%s %.0fms ", f, a[2] * 1000; f=""}' "$log")"
  verdict "$name" "$log" "$(printf 'tok/s %.0f, MFU %.3f, peak %.0f MiB, activations %.0f MiB/micro-batch; %s' \
    "$(num tok_per_s)" "$(num mfu)" "$(awk "BEGIN {print $(num peak_memory_bytes) / 1048576}")" \
    "$(awk "BEGIN {print $(num activation_bytes_per_micro_batch) / 1048576}")" "$fams" 2>/dev/null)" '"tok_per_s": [0-9]'
done

finish
