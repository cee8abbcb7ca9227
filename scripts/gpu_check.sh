#!/usr/bin/env bash
# Why: the GPU machines of this workplace are bare (a CUDA toolkit, CMake, a compiler and PyTorch with
# its own cuDNN/NCCL wheels; no Open MPI, no OpenBLAS, no package registry) and device time is scarce.
# So the CUDA build happens here and one folder travels: `prepare DIR` builds Release with CUDA for
# sm_90 and packs DIR with the executables, the manifests they need, every shared library they load
# that a bare CUDA machine lacks (Open MPI with its plugins and help files, PMIx, hwloc, libevent,
# OpenBLAS, the OpenMP and C++ runtimes, ...) and DIR/run.sh (scripts/gpu_run.sh), which runs every GPU
# check there without building. The CUDA libraries (cudart, cuBLAS, cuDNN, NCCL) are not packed:
# run.sh finds them on the machine.
#
#   scripts/gpu_check.sh prepare DIR    build (BUILD_DIR, default build-gpu) and pack DIR (<= 60 MiB)
#   DIR/run.sh                          on the GPU machine: `CHECK <name> ok|FAIL|SKIPPED ...` lines
#
# Settings: BUILD_DIR (default build-gpu: its own folder, (re)configured on every prepare with
# -DMOETRAIN_NATIVE=OFF so that the binaries run on any x86-64 CPU, whatever an earlier configure set),
# CUDA_ARCH (default 90), JOBS (default nproc), MT_BUNDLE_FROM=BUILD (pack an existing CUDA build as it
# is, no build: the ctest dry run does this with its own build directory, usually -march=native).
# BUNDLE.txt records the build's MOETRAIN_NATIVE and this CPU's identity; run.sh refuses a native
# bundle on any other CPU.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

die() { echo "gpu_check: $*" >&2; exit 2; }
[ "${1:-}" = "prepare" ] && [ -n "${2:-}" ] || die "usage: scripts/gpu_check.sh prepare DIR"
mkdir -p "$2"
DIR="$(cd "$2" && pwd)"
MULTIARCH="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
SYSLIB="/usr/lib/$MULTIARCH"
TARGETS=(moetrain moetrain_gpu_tests gpu_layout_job gpu_attention_job)

# ---- build (or reuse) ---------------------------------------------------------------------------------
if [ -n "${MT_BUNDLE_FROM:-}" ]; then
  B="$MT_BUNDLE_FROM"
else
  B="${BUILD_DIR:-$ROOT/build-gpu}"
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache
                                            -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  # Every time, not only for a new folder: a reused folder may carry MOETRAIN_NATIVE=ON from elsewhere.
  cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=Release -DMOETRAIN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" \
    -DMOETRAIN_NATIVE=OFF "${launcher[@]}" >/dev/null || die "configure failed in $B"
  cmake --build "$B" -j"${JOBS:-$(nproc)}" --target "${TARGETS[@]}" >"$B/gpu_bundle_build.log" 2>&1 ||
    die "build failed: see $B/gpu_bundle_build.log"
  grep -q '^MOETRAIN_NATIVE:BOOL=OFF$' "$B/CMakeCache.txt" || die "$B is still configured with MOETRAIN_NATIVE on"
fi
[ -f "$B/libmoetrain_cuda.a" ] || die "$B is not a CUDA build (MOETRAIN_CUDA=ON)"
EXES=("$B/moetrain" "$B/tests/gpu/moetrain_gpu_tests" "$B/tests/gpu/gpu_layout_job" "$B/tests/gpu/gpu_attention_job")
for e in "${EXES[@]}"; do [ -x "$e" ] || die "$e is missing (build the targets ${TARGETS[*]})"; done
native="$(sed -n 's/^MOETRAIN_NATIVE:BOOL=//p' "$B/CMakeCache.txt")"

# ---- pack: a fresh folder, moved into place at the end ---------------------------------------------------
T="$DIR.tmp.$$"
rm -rf "$T"
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/bin" "$T/lib" "$T/manifests/bench" "$T/mpi/bin" "$T/mpi/openmpi3" "$T/mpi/share" "$T/mpi/pmix"
cp "${EXES[@]}" "$T/bin/"
strip --strip-unneeded "$T"/bin/*
cp "$ROOT"/manifests/bench/h100_*.json "$T/manifests/bench/"
cp "$ROOT/scripts/gpu_run.sh" "$T/run.sh"
chmod +x "$T/run.sh"

# Open MPI (mpirun is orterun), its components and help files; PMIx with its components and help files;
# hwloc's PCI plugin. Components for networks a single node does not use (InfiniBand, UCX, OFI, PSM)
# are left out: they pull in large libraries, and run.sh selects shared memory (btl self,vader).
network='libucp|libuct|libucs|libfabric|libibverbs|librdmacm|libpsm'
cp -L "$(readlink -f "$(command -v mpirun)")" "$T/mpi/bin/mpirun"
for p in "$SYSLIB"/openmpi/lib/openmpi3/mca_*.so; do
  deps="$(ldd "$p" 2>/dev/null)"  # whole, not piped into grep -q (SIGPIPE under pipefail)
  [[ "$deps" =~ $network ]] || cp -L "$p" "$T/mpi/openmpi3/"
done
cp -rL /usr/share/openmpi "$T/mpi/share/openmpi"
PMIX="$SYSLIB/pmix2"
cp -L "$PMIX"/lib/pmix/*.so "$T/mpi/pmix/"
cp -rL "$PMIX/share/pmix" "$T/mpi/share/pmix"
[ -f "$PMIX/share/pmix-mca-params.conf" ] && cp -L "$PMIX/share/pmix-mca-params.conf" "$T/mpi/share/"
mkdir -p "$T/mpi/hwloc"
[ -f "$SYSLIB/hwloc/hwloc_pci.so" ] && cp -L "$SYSLIB/hwloc/hwloc_pci.so" "$T/mpi/hwloc/"

# Every library the packed ELF files load, transitively (ldd resolves the closure), but the C library
# and the CUDA libraries (the machine's, found by run.sh). The C library goes to glibc/ with its loader
# apart: bundled libraries need this machine's glibc (2.36 for Debian bookworm's libstdc++ and
# libevent), and on a machine with an older one run.sh starts every executable through exe.sh, the
# bundled loader with glibc/ (never on LD_LIBRARY_PATH, where the machine's own tools would load it).
system_re='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libutil\.so|libanl\.so)'
cuda_re='^(libcuda\.so|libcudart\.so|libcublas|libcublasLt|libnccl|libcudnn|libnvrtc|libnvJitLink|libcufft|libcurand|libcusparse|libcusolver)'
elves=("$T"/bin/* "$T"/mpi/bin/mpirun "$T"/mpi/openmpi3/*.so "$T"/mpi/pmix/*.so "$T"/mpi/hwloc/*.so)
LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "${elves[@]}" 2>/dev/null |
  awk '/=>/ {print $1, $3}' | sort -u >"$T/.deps"
missing="$(awk '$2 == "not" {print $1}' "$T/.deps" | grep -vE "$cuda_re" | sort -u || true)"
[ -z "$missing" ] || die "libraries not found here: $missing"
mkdir -p "$T/glibc"
while read -r name path; do
  [[ "$name" =~ $cuda_re || "$name" =~ ^linux-vdso ]] && continue
  dest="$T/lib"
  [[ "$name" =~ $system_re ]] && dest="$T/glibc"
  [ -e "$dest/$name" ] || cp -L "$path" "$dest/$name"
done <"$T/.deps"
loader="$(ldd "$T/bin/moetrain" | awk '/ld-linux/ {print $1}')"
cp -L "$loader" "$T/glibc/$(basename "$loader")"
cat >"$T/exe.sh" <<EOF
#!/bin/sh
# Runs a bundled executable with the bundle's C library (run.sh uses it where the machine's is older).
d="\$(dirname "\$0")"
exec "\$d/glibc/$(basename "$loader")" --library-path "\$d/glibc:\$LD_LIBRARY_PATH" "\$@"
EOF
chmod +x "$T/exe.sh"
rm -f "$T/.deps"
strip --strip-unneeded "$T"/lib/*.so* "$T"/mpi/openmpi3/*.so "$T"/mpi/pmix/*.so 2>/dev/null || true

glibc="$(objdump -T "${elves[@]}" "$T"/lib/*.so* 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sort -uV | tail -1)"
{
  echo "moetrain GPU bundle"
  echo "source: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (modified)')"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $B, CUDA architectures $(sed -n 's/^MOETRAIN_CUDA_ARCH:[A-Z]*=//p' "$B/CMakeCache.txt") (MOETRAIN_CUDA_ARCH; CUDA_ARCH for a fresh build)"
  echo "native: ${native:-unknown} (ON: built for this machine's CPU only, -march=native; run.sh refuses it elsewhere)"
  echo "cpu: $(bash "$ROOT/scripts/gpu_run.sh" --cpu-identity)"
  echo "needs: ${glibc#GLIBC_} or newer glibc; cudart 13, cuBLAS 13, NCCL 2, cuDNN 9 on the machine"
  echo "bundled libraries: $(ls "$T/lib" | tr '\n' ' ')"
} >"$T/BUNDLE.txt"

# Libraries over 8 MiB travel gzipped (OpenBLAS, with kernels for every CPU: 36 MiB, 11 MiB gzipped);
# run.sh unpacks them into a temporary folder.
find "$T/lib" -type f -size +8M -exec gzip -9 {} +
size_kib="$(du -sk "$T" | cut -f1)"
[ "$size_kib" -le $((60 * 1024)) ] || die "the bundle is $((size_kib / 1024)) MiB, over the 60 MiB limit"
rm -rf "$DIR"
mv "$T" "$DIR"
trap - EXIT
echo "gpu_check: bundle $DIR: $((size_kib / 1024)) MiB, $(ls "$DIR/bin" | wc -l) executables, $(ls "$DIR/lib" | wc -l) libraries, $(ls "$DIR/mpi/openmpi3" | wc -l) Open MPI components; carry it and run $DIR/run.sh"
