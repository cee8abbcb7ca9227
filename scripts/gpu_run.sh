#!/usr/bin/env bash
# Why: the run.sh of the GPU bundle (scripts/gpu_check.sh prepare DIR copies it to DIR/run.sh): on a
# bare GPU machine, without building, one call checks the CUDA backend: every GPU op and the whole
# model against the CPU, the tp / ep layouts through MPI, attention (native and cuDNN) and the speed of
# the bench manifests. Each check has its own time limit inside a total budget (MT_GPU_BUDGET seconds,
# default 330), prints `CHECK <name> ok|FAIL|SKIPPED <figures>` as soon as it ends (so a run that is cut
# off still reports what finished) and the last line is `gpu check: N ok, N failed, N skipped`; the
# exit status is 0 iff nothing failed. Without a GPU every GPU check is SKIPPED. Logs go to
# MT_GPU_LOGS (default $OUT/moetrain_gpu_logs when $OUT is set, else /tmp/moetrain_gpu_logs).
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
LOGS="${MT_GPU_LOGS:-${OUT:-/tmp}/moetrain_gpu_logs}"
BUDGET="${MT_GPU_BUDGET:-330}"
mkdir -p "$LOGS"
N_OK=0 N_FAIL=0 N_SKIP=0

report() {  # name status figures...
  local name="$1" status="$2"
  shift 2
  printf 'CHECK %s %s %s\n' "$name" "$status" "$*"
  case "$status" in ok) N_OK=$((N_OK + 1)) ;; FAIL) N_FAIL=$((N_FAIL + 1)) ;; *) N_SKIP=$((N_SKIP + 1)) ;; esac
}
slug() { tr 'A-Z' 'a-z' <<<"$1" | sed 's/[^a-z0-9]\{1,\}/_/g; s/^_//; s/_$//' | cut -c1-60; }
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
# The verdict of a finished run(): 77 is the executables' "no GPU visible".
verdict() {  # name log figures
  case "$RC" in
    0) report "$1" ok "$3 (${SECS}s)" ;;
    77) report "$1" SKIPPED "no GPU visible" ;;
    124 | 137) report "$1" FAIL "timed out after ${SECS}s; log $2" ;;
    *) report "$1" FAIL "exit $RC: $(grep -m1 -iE 'error|fail|mismatch' "$2" | cut -c1-160); log $2" ;;
  esac
}

# ---- the CUDA libraries: the toolkit's folder, then PyTorch's nvidia wheels, then ldconfig -------------
dirs=()
for d in "${CUDA_HOME:-/nonexistent}/lib64" /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && dirs+=("$d")
done
for py in python3 python; do
  command -v "$py" >/dev/null || continue
  while read -r sp; do
    for d in "$sp"/nvidia/*/lib; do [ -d "$d" ] && dirs+=("$d"); done
  done < <("$py" -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))' 2>/dev/null)
  break
done
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

# ---- the device --------------------------------------------------------------------------------------
run "$LOGS/device.log" 30 "${X[@]}" "$B/bin/gpu_attention_job" --probe
GPU=0
if [ "$RC" = 0 ]; then
  GPU="$(sed -n 's/^gpus: //p' "$LOGS/device.log")"
  smi="$(nvidia-smi --query-gpu=driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  report device ok "$(grep -m1 '^device' "$LOGS/device.log" | cut -c9-); ${GPU} GPU(s)${smi:+; driver, memory: $smi}"
else
  verdict device "$LOGS/device.log" ""
fi
gpu_check() {  # name: SKIPPED without a GPU (returns 1)
  [ "$GPU" != 0 ] && return 0
  report "$1" SKIPPED "no GPU visible"
  return 1
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
mapfile -t tests < <("${X[@]}" "$T" --list-test-names-only 2>/dev/null | sed '/^$/d')
model=() ops=()
for t in "${tests[@]}"; do
  if [[ "$t" == *model* || "$t" == *training* ]]; then model+=("$t"); else ops+=("$t"); fi
done
[ "${#tests[@]}" -gt 0 ] || report gpu_tests FAIL "moetrain_gpu_tests lists no tests"
for t in "${model[@]}" "${ops[@]}"; do
  name="vs_cpu_$(slug "${t#gpu }")"
  gpu_check "$name" || continue
  log="$LOGS/$name.log"
  run "$log" 120 "${X[@]}" "$T" --reporter compact "$(sed 's/[][,\\]/\\&/g' <<<"$t")"
  verdict "$name" "$log" "$(grep -m1 -E '^(Passed|All tests)' "$log" | cut -c1-100)"
done

# ---- layouts on one GPU through MPI staging (NCCL needs a GPU per rank) -----------------------------------
for l in "2 2 1 fp32" "2 1 2 fp32" "4 2 2 fp32" "2 2 1 bf16" "4 2 2 bf16"; do
  set -- $l
  name="layout_np$1_tp$2_ep$3_$4"
  gpu_check "$name" || continue
  run "$LOGS/$name.log" 120 "${MPIRUN[@]}" -np "$1" "${X[@]}" "$B/bin/gpu_layout_job" "$2" "$3" "$4"
  verdict "$name" "$LOGS/$name.log" "MPI staging; $(grep -m1 'loss' "$LOGS/$name.log" | sed 's/^ *//' | cut -c1-100)"
done
if gpu_check layout_np2_tp2_ep1_nccl; then
  if [ "$GPU" -ge 2 ]; then
    run "$LOGS/layout_nccl.log" 120 "${MPIRUN[@]}" -np 2 "${X[@]}" "$B/bin/gpu_layout_job" 2 1 bf16
    verdict layout_np2_tp2_ep1_nccl "$LOGS/layout_nccl.log" "$(grep -m1 'nccl' "$LOGS/layout_nccl.log" | cut -c1-100)"
  else
    report layout_np2_tp2_ep1_nccl SKIPPED "one GPU: NCCL needs a GPU per rank"
  fi
fi

# ---- attention alone: cuDNN against the CPU, then native and cuDNN at S 2048, head_dim 128 ----------------
if gpu_check attention; then
  run "$LOGS/attention.log" 120 "${X[@]}" "$B/bin/gpu_attention_job"
  # The job prints its own CHECK lines; a job that died prints the rest as a failure.
  while read -r _ name status rest; do report "$name" "$status" "$rest"; done < <(grep '^CHECK ' "$LOGS/attention.log")
  [ "$RC" = 0 ] || verdict attention "$LOGS/attention.log" ""
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
    "$(awk "BEGIN {print $(num activation_bytes_per_micro_batch) / 1048576}")" "$fams" 2>/dev/null)"
done

echo "logs: $LOGS; ${SECONDS}s in all"
echo "gpu check: $N_OK ok, $N_FAIL failed, $N_SKIP skipped"
[ "$N_FAIL" = 0 ]
