// Why: the one row statistic both attention backwards (attention.cu, flash_attention.cu) need before
// their gradient kernels: D_i = dout_i . out_i per (sequence, token, head), in the (B, H, S) layout of lse.
#pragma once

#include "cuda/common.cuh"
#include "engine/ops/dims.h"

namespace mt::cuda {

// One warp per row; blockDim.x = 32 * warps_per_block. out / dout are (B, S, H, Dh).
template <typename Dt>
__global__ void attention_row_dot_kernel(float* dvec, const Dt* dout, const Dt* out, AttnDims g) {
  const size_t row = blockIdx.x * size_t(blockDim.x >> 5) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= size_t(g.B) * g.S * g.H) return;
  const int h = int(row % g.H), t = int((row / g.H) % g.S), b = int(row / (size_t(g.H) * g.S));
  const size_t at = g.out_at(b, t, h);
  float s = 0.f;
  for (int d = lane; d < g.Dh; d += 32) s += to_f(dout[at + d]) * to_f(out[at + d]);
  s = warp_sum(s);
  if (lane == 0) dvec[g.lse_at(b, h, t)] = s;
}

// D into `dvec` (B, H, S) on the context's stream.
template <typename Dt>
void attention_row_dot(Context& ctx, float* dvec, const Dt* dout, const Dt* out, const AttnDims& d) {
  constexpr int kWarpsPerBlock = 8;
  const size_t rows = size_t(d.B) * d.S * d.H;
  MT_LAUNCH(ctx, attention_row_dot_kernel<Dt>, ceil_div(rows, kWarpsPerBlock), 32 * kWarpsPerBlock, 0, dvec, dout, out,
            d);
}

}  // namespace mt::cuda
