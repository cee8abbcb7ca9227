#!/usr/bin/env bash
# Why: one command for a machine with an NVIDIA GPU (an H100: sm_90) that builds the CUDA backend, runs
# the GPU tests (every CUDA op against its CPU twin, the whole model CPU vs GPU), the tp / ep layouts on
# one GPU through MPI staging, and `moetrain bench` on manifests/bench/*.json, then prints one table.
#
#   scripts/gpu_check.sh                 build in build-gpu/ and run everything
#   scripts/gpu_check.sh --fetch-debs D  (on a Debian/Ubuntu machine with apt, NOT the GPU machine)
#                                        download into D the .deb files of the build and MPI dependencies
#
# Finding MPI. The GPU machines of this workplace have CUDA, CMake and a compiler but no Open MPI,
# OpenBLAS, Catch2, CLI11 or nlohmann-json, and reach no package registry. Carry them as .deb files:
#   1. here:   echo /.debs/ >> .git/info/exclude; scripts/gpu_check.sh --fetch-debs .debs
#   2. there:  carry .debs and run  MOETRAIN_DEBS=.debs scripts/gpu_check.sh
# The packages are unpacked with dpkg -x under $MT_DEPS_ROOT (default /tmp/moetrain-deps), never into
# /, and found through CMAKE_PREFIX_PATH, CPATH, LD_LIBRARY_PATH and OPAL_PREFIX (Open MPI relocated).
# mpirun is taken, in this order, from $MPI_HOME/bin (mpirun or mpirun.openmpi), from the unpacked
# packages, or from PATH; without one the layout checks are reported as skipped, not failed.
# Other settings: BUILD_DIR (default build-gpu), CUDA_ARCH (default 90), JOBS (default nproc),
# MOETRAIN_PREBUILT=1 (use BUILD_DIR as it is: no configure or build).
set -uo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
  libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common libhwloc15 libhwloc-dev libpmix2 libevent-core-2.1-7
  libevent-pthreads-2.1-7 libfabric1 libucx0 libpsm2-2 libpsm-infinipath1 libibverbs1 librdmacm1 libnl-3-200
  libnl-route-3-200 libefa1 libltdl7 libxnvctrl0
  libopenblas0 libopenblas0-openmp libopenblas-dev libopenblas-openmp-dev libgfortran5
  catch2 libcli11-dev nlohmann-json3-dev zlib1g-dev
)

if [ "${1:-}" = "--fetch-debs" ]; then
  dir="${2:?usage: scripts/gpu_check.sh --fetch-debs DIR}"
  mkdir -p "$dir"
  (cd "$dir" && apt-get download "${DEB_PACKAGES[@]}") || { echo "gpu_check: apt-get download failed" >&2; exit 1; }
  echo "gpu_check: $(ls "$dir"/*.deb | wc -l) packages in $dir ($(du -sh "$dir" | cut -f1)); carry it and run MOETRAIN_DEBS=$dir scripts/gpu_check.sh"
  exit 0
fi

BUILD_DIR="${BUILD_DIR:-build-gpu}"
CUDA_ARCH="${CUDA_ARCH:-90}"
JOBS="${JOBS:-$(nproc)}"
LOG_DIR="${OUT:-$BUILD_DIR}/gpu_check_logs"
mkdir -p "$BUILD_DIR" "$LOG_DIR"
ROWS=()
row() { ROWS+=("$(printf '%-44s %-8s %s' "$1" "$2" "$3")"); }
export PATH="/usr/local/cuda/bin:$PATH"

# ---- dependencies from carried .deb files ----------------------------------------------------------------
if [ -n "${MOETRAIN_DEBS:-}" ]; then
  root="${MT_DEPS_ROOT:-/tmp/moetrain-deps}"
  mkdir -p "$root"
  for f in "$MOETRAIN_DEBS"/*.deb; do dpkg -x "$f" "$root"; done
  multiarch="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
  export CMAKE_PREFIX_PATH="$root/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export CPATH="$root/usr/include:$root/usr/include/$multiarch${CPATH:+:$CPATH}"
  export LIBRARY_PATH="$root/usr/lib/$multiarch${LIBRARY_PATH:+:$LIBRARY_PATH}"
  export LD_LIBRARY_PATH="$root/usr/lib/$multiarch:$root/usr/lib/$multiarch/openblas-openmp:$root/usr/lib/$multiarch/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export OPAL_PREFIX="$root/usr"  # Open MPI finds its components and help files under the new prefix
  export MPI_HOME="${MPI_HOME:-$root/usr}"
  row "dependencies" "ok" "$(ls "$MOETRAIN_DEBS"/*.deb | wc -l) .deb unpacked under $root"
fi

MPIRUN=""
for c in "${MPI_HOME:-/nonexistent}/bin/mpirun" "${MPI_HOME:-/nonexistent}/bin/mpirun.openmpi"; do
  [ -x "$c" ] && { MPIRUN="$c"; break; }
done
[ -z "$MPIRUN" ] && MPIRUN="$(command -v mpirun || true)"

# ---- build -----------------------------------------------------------------------------------------------
if [ "${MOETRAIN_PREBUILT:-0}" != "1" ]; then
  cmake_args=(-S . -B "$BUILD_DIR" -DMOETRAIN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" -DMOETRAIN_NATIVE=OFF)
  if [ -n "${MPI_HOME:-}" ]; then
    for w in "$MPI_HOME/bin/mpicc" "$MPI_HOME/bin/mpicc.openmpi"; do
      [ -x "$w" ] && { cmake_args+=(-DMPI_C_COMPILER="$w"); break; }
    done
    [ -n "$MPIRUN" ] && cmake_args+=(-DMPIEXEC_EXECUTABLE="$MPIRUN")
  fi
  if cmake "${cmake_args[@]}" >"$LOG_DIR/configure.log" 2>&1; then
    row "configure (sm_$CUDA_ARCH)" "ok" "$BUILD_DIR"
  else
    row "configure (sm_$CUDA_ARCH)" "FAILED" "see $LOG_DIR/configure.log"
  fi
  if make -C "$BUILD_DIR" -j"$JOBS" moetrain_gpu_tests gpu_layout_job >"$LOG_DIR/build.log" 2>&1; then
    row "build GPU tests" "ok" ""
  else
    row "build GPU tests" "FAILED" "see $LOG_DIR/build.log"
  fi
  # The executable (for bench) separately: a failure there must not hide the kernel tests.
  if make -C "$BUILD_DIR" -j"$JOBS" moetrain >"$LOG_DIR/build_moetrain.log" 2>&1; then
    row "build moetrain" "ok" ""
  else
    row "build moetrain" "FAILED" "see $LOG_DIR/build_moetrain.log"
  fi
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$LOG_DIR/gpu.txt" 2>&1 &&
  row "GPU" "-" "$(head -1 "$LOG_DIR/gpu.txt")"

# ---- GPU tests: ops and model against the CPU ---------------------------------------------------------------
T="$BUILD_DIR/tests/gpu/moetrain_gpu_tests"
if [ -x "$T" ]; then
  "$T" --reporter compact >"$LOG_DIR/gpu_tests.log" 2>&1
  rc=$?
  summary="$(grep -E '^(Passed|Failed|All tests)' "$LOG_DIR/gpu_tests.log" | tail -1)"
  if grep -q "GPU test skipped" "$LOG_DIR/gpu_tests.log"; then
    row "ops + model vs CPU ([gpu] tests)" "SKIPPED" "no GPU visible"
  elif [ $rc -eq 0 ]; then row "ops + model vs CPU ([gpu] tests)" "passed" "$summary"
  else row "ops + model vs CPU ([gpu] tests)" "FAILED" "$summary; see $LOG_DIR/gpu_tests.log"; fi
else
  row "ops + model vs CPU ([gpu] tests)" "FAILED" "not built"
fi

# ---- layouts on one GPU through MPI staging ---------------------------------------------------------------
J="$BUILD_DIR/tests/gpu/gpu_layout_job"
for layout in "2 2 1 fp32" "2 1 2 fp32" "4 2 2 fp32" "2 2 1 bf16" "4 2 2 bf16"; do
  set -- $layout
  name="layout np$1 tp$2 ep$3 $4 (MPI staging)"
  if [ -z "$MPIRUN" ]; then row "$name" "SKIPPED" "no mpirun (set MPI_HOME or MOETRAIN_DEBS)"; continue; fi
  if [ ! -x "$J" ]; then row "$name" "FAILED" "gpu_layout_job not built"; continue; fi
  log="$LOG_DIR/layout_np$1_tp$2_ep$3_$4.log"
  if OMP_NUM_THREADS=1 MOETRAIN_COMM=mpi timeout 600 "$MPIRUN" --allow-run-as-root --oversubscribe -np "$1" \
      "$J" "$2" "$3" "$4" >"$log" 2>&1; then
    if grep -q "skipped" "$log"; then row "$name" "SKIPPED" "no GPU visible"
    else row "$name" "passed" "$(grep -m1 -E 'loss 0:' "$log" | sed 's/^ *//')"; fi
  else
    row "$name" "FAILED" "see $log"
  fi
done

# ---- bench ------------------------------------------------------------------------------------------------
M="$BUILD_DIR/moetrain"
if [ -x "$M" ]; then
  for cfg in manifests/bench/*.json; do
    [ -e "$cfg" ] || continue
    log="$LOG_DIR/bench_$(basename "$cfg" .json).log"
    if timeout 600 "$M" bench "$cfg" --device cuda >"$log" 2>&1; then
      row "bench $(basename "$cfg")" "ok" "$(grep -iE 'tok/s|mfu' "$log" | tail -1 | cut -c1-90)"
    else
      row "bench $(basename "$cfg")" "FAILED" "$(tail -1 "$log" | cut -c1-90)"
    fi
  done
else
  row "bench" "SKIPPED" "moetrain not built"
fi

echo
printf '%-44s %-8s %s\n' "check" "result" "detail"
printf '%s\n' "------------------------------------------------------------------------------------------------"
printf '%s\n' "${ROWS[@]}"
echo "logs: $LOG_DIR"
failed=0
for r in "${ROWS[@]}"; do [[ "$r" == *" FAILED "* ]] && failed=1; done
exit $failed
