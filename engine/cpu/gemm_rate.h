// Why: MFU on the CPU needs a peak to divide by, and no datasheet gives one for a shared machine: the
// CPU backend's reference is the rate its own GEMM library reaches here.
#pragma once

namespace mt::cpu {

// A quick measurement of this host's fp32 GEMM rate (FLOP/s per process, at the thread count set now),
// the CPU's MFU reference; measured once per process.
double measure_gemm_flops();

}  // namespace mt::cpu
