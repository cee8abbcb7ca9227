// Why: the routed experts as a grouped SwiGLU on the GPU. The rows arrive sorted by expert (offsets on
// the host), so each expert is a few cuBLASLt GEMMs on its contiguous block of rows, and the SwiGLU in
// between runs once over all rows. Experts that received no rows are skipped. The GEMMs are queued on
// the one stream back to back (no synchronisation between experts); with E / ep experts of a few
// hundred rows each they are small, which a grouped kernel would serve better (future work).
//
// Per expert e with rows x (n, C): h13 = [x w1_e^T | x w3_e^T] (n, 2F), act = swiglu(h13) (n, F),
// out = act w2_e^T (n, C). Backward: dact = dout w2_e, dw2_e += dout^T act, dh13 = swiglu'(dact),
// dinp = dh13[:, :F] w1_e + dh13[:, F:] w3_e, dw1_e += dh13[:, :F]^T x, dw3_e += dh13[:, F:]^T x.
// In bf16 the two products of dinp are summed in fp32 (scratch, in blocks of rows) and rounded once.
#include <algorithm>
#include <climits>
#include <type_traits>

#include "cuda/kernels.h"
#include "engine/core/check.h"

namespace mt::cuda {

namespace {

void check_sizes(const int64_t* offsets, int E, int C, int F) {
  MT_CHECK(E >= 0 && C > 0 && F > 0, "experts: E ", E, " C ", C, " F ", F);
  MT_CHECK(offsets[0] >= 0, "experts: offsets[0] = ", offsets[0]);
  for (int e = 0; e < E; ++e)
    MT_CHECK(offsets[e + 1] >= offsets[e] && offsets[e + 1] <= INT32_MAX, "experts: offsets[", e + 1, "] = ",
             offsets[e + 1], " after ", offsets[e]);
}

GemmShape shape(Trans ta, Trans tb, int m, int n, int k, int lda, int ldb, int ldc) {
  return GemmShape{ta, tb, m, n, k, lda, ldb, ldc};
}

// dx (n, C) = dh (n, 2F; ld 2F) [w1_e; w3_e]: one rounding to T.
template <typename T>
void input_grad(Context& ctx, T* dx, const T* dh, const T* w1e, const T* w3e, int n, int C, int F) {
  const int ld13 = 2 * F;
  if constexpr (std::is_same_v<T, float>) {
    gemm<T>(ctx, dx, dh, w1e, shape(Trans::No, Trans::No, n, C, F, ld13, C, C), 1.f, 0.f);
    gemm<T>(ctx, dx, dh + F, w3e, shape(Trans::No, Trans::No, n, C, F, ld13, C, C), 1.f, 1.f);
  } else {
    // Rows per block so that the fp32 sum fits the context's reserved scratch (16 MiB at least).
    const int block = std::max(1, int((size_t(16) << 20) / (sizeof(float) * size_t(C))));
    float* acc = static_cast<float*>(ctx.scratch(sizeof(float) * size_t(std::min(n, block)) * C));
    for (int r = 0; r < n; r += block) {
      const int m = std::min(block, n - r);
      const T* d = dh + size_t(r) * ld13;
      gemm_acc<T>(ctx, acc, d, w1e, shape(Trans::No, Trans::No, m, C, F, ld13, C, C), 1.f, 0.f);
      gemm_acc<T>(ctx, acc, d + F, w3e, shape(Trans::No, Trans::No, m, C, F, ld13, C, C), 1.f, 1.f);
      to_compute<T>(ctx, dx + size_t(r) * C, acc, size_t(m) * C);
    }
  }
}

}  // namespace

template <typename T>
void experts_forward(Context& ctx, T* out, T* h13, T* act, const T* inp, const T* w1, const T* w3, const T* w2,
                     const int64_t* offsets, int E, int C, int F) {
  check_sizes(offsets, E, C, F);
  const size_t wsize = size_t(F) * C;
  const int ld13 = 2 * F;
  for (int e = 0; e < E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    const T* x = inp + size_t(r0) * C;
    T* h = h13 + size_t(r0) * ld13;
    gemm<T>(ctx, h, x, w1 + e * wsize, shape(Trans::No, Trans::Yes, n, F, C, C, C, ld13), 1.f, 0.f);
    gemm<T>(ctx, h + F, x, w3 + e * wsize, shape(Trans::No, Trans::Yes, n, F, C, C, C, ld13), 1.f, 0.f);
  }
  const size_t first = size_t(offsets[0]);
  swiglu_forward<T>(ctx, act + first * F, h13 + first * ld13, int(offsets[E] - offsets[0]), F);
  for (int e = 0; e < E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    gemm<T>(ctx, out + size_t(r0) * C, act + size_t(r0) * F, w2 + e * wsize,
            shape(Trans::No, Trans::Yes, n, C, F, F, F, C), 1.f, 0.f);
  }
}

template <typename T>
void experts_backward(Context& ctx, T* dinp, float* dw1, float* dw3, float* dw2, T* dh13, T* dact, const T* dout,
                      const T* inp, const T* h13, const T* act, const T* w1, const T* w3, const T* w2,
                      const int64_t* offsets, int E, int C, int F) {
  check_sizes(offsets, E, C, F);
  const size_t wsize = size_t(F) * C;
  const int ld13 = 2 * F;
  for (int e = 0; e < E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    const T* g = dout + size_t(r0) * C;
    gemm<T>(ctx, dact + size_t(r0) * F, g, w2 + e * wsize, shape(Trans::No, Trans::No, n, F, C, C, F, F), 1.f, 0.f);
    gemm_acc<T>(ctx, dw2 + e * wsize, g, act + size_t(r0) * F, shape(Trans::Yes, Trans::No, C, F, n, C, F, F), 1.f,
                1.f);
  }
  const size_t first = size_t(offsets[0]);
  swiglu_backward<T>(ctx, dh13 + first * ld13, dact + first * F, h13 + first * ld13, int(offsets[E] - offsets[0]), F);
  for (int e = 0; e < E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    const T* x = inp + size_t(r0) * C;
    const T* dh = dh13 + size_t(r0) * ld13;
    input_grad<T>(ctx, dinp + size_t(r0) * C, dh, w1 + e * wsize, w3 + e * wsize, n, C, F);
    gemm_acc<T>(ctx, dw1 + e * wsize, dh, x, shape(Trans::Yes, Trans::No, F, C, n, ld13, C, C), 1.f, 1.f);
    gemm_acc<T>(ctx, dw3 + e * wsize, dh + F, x, shape(Trans::Yes, Trans::No, F, C, n, ld13, C, C), 1.f, 1.f);
  }
}

template void experts_forward<float>(Context&, float*, float*, float*, const float*, const float*, const float*,
                                     const float*, const int64_t*, int, int, int);
template void experts_forward<mt::bf16>(Context&, mt::bf16*, mt::bf16*, mt::bf16*, const mt::bf16*, const mt::bf16*,
                                        const mt::bf16*, const mt::bf16*, const int64_t*, int, int, int);
template void experts_backward<float>(Context&, float*, float*, float*, float*, float*, float*, const float*,
                                      const float*, const float*, const float*, const float*, const float*,
                                      const float*, const int64_t*, int, int, int);
template void experts_backward<mt::bf16>(Context&, mt::bf16*, float*, float*, float*, mt::bf16*, mt::bf16*,
                                         const mt::bf16*, const mt::bf16*, const mt::bf16*, const mt::bf16*,
                                         const mt::bf16*, const mt::bf16*, const mt::bf16*, const int64_t*, int, int,
                                         int);

}  // namespace mt::cuda
