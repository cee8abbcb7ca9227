// Why: the one row statistic both attention backwards (attention.cu, flash_attention.cu) need before
// their gradient kernels: D_i = dout_i . out_i per (sequence, token, head), in the (B, H, T) layout of lse.
#pragma once

#include "cuda/common.cuh"

namespace mt::cuda {

// One warp per row; blockDim.x = 32 * warps_per_block. out / dout are (B, T, H, Dh).
template <typename Dt>
__global__ void attention_row_dot_kernel(float* dvec, const Dt* dout, const Dt* out, int B, int T, int H, int Dh) {
  const size_t row = blockIdx.x * size_t(blockDim.x >> 5) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= size_t(B) * T * H) return;
  const int h = int(row % H), t = int((row / H) % T), b = int(row / (size_t(H) * T));
  const size_t at = ((size_t(b) * T + t) * H + h) * size_t(Dh);
  float s = 0.f;
  for (int d = lane; d < Dh; d += 32) s += to_f(dout[at + d]) * to_f(out[at + d]);
  s = warp_sum(s);
  if (lane == 0) dvec[(size_t(b) * H + h) * T + t] = s;
}

// D into `dvec` (B, H, T) on the context's stream.
template <typename Dt>
void attention_row_dot(Context& ctx, float* dvec, const Dt* dout, const Dt* out, int B, int T, int H, int Dh) {
  constexpr int kWarpsPerBlock = 8;
  const size_t rows = size_t(B) * T * H;
  MT_LAUNCH(ctx, attention_row_dot_kernel<Dt>, ceil_div(rows, kWarpsPerBlock), 32 * kWarpsPerBlock, 0, dvec, dout, out,
            B, T, H, Dh);
}

}  // namespace mt::cuda
