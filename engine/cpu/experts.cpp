// Why: the routed experts as a grouped SwiGLU on the CPU: the rows arrive sorted by expert, so each
// expert is a few plain OpenBLAS GEMMs on its contiguous block of rows (multi-threaded inside BLAS),
// and the SwiGLU in between runs once over all rows. Experts that received no rows are skipped.
//
// Per expert e with rows x (n, C): h13 = [x w1_e^T | x w3_e^T] (n, 2F), act = swiglu(h13) (n, F),
// out = act w2_e^T (n, C). Backward: dact = dout w2_e, dw2_e += dout^T act, dh13 = swiglu'(dact),
// dinp = dh13[:, :F] w1_e + dh13[:, F:] w3_e, dw1_e += dh13[:, :F]^T x, dw3_e += dh13[:, F:]^T x.
#include "engine/core/check.h"
#include "engine/cpu/blas.h"
#include "engine/cpu/kernels.h"

namespace mt::cpu {

namespace {

void check_sizes(const int64_t* offsets, int E, int C, int F) {
  MT_CHECK(E >= 0 && C > 0 && F > 0, "experts: E ", E, " C ", C, " F ", F);
  MT_CHECK(offsets[0] >= 0, "experts: offsets[0] = ", offsets[0]);
  for (int e = 0; e < E; ++e)
    MT_CHECK(offsets[e + 1] >= offsets[e] && offsets[e + 1] <= INT32_MAX, "experts: offsets[", e + 1, "] = ",
             offsets[e + 1], " after ", offsets[e]);
}

}  // namespace

template <typename T>
void experts_forward(T* out, T* h13, T* act, const T* inp, const T* w1, const T* w3, const T* w2,
                     const int64_t* offsets, int E, int C, int F) {
  check_sizes(offsets, E, C, F);
  const size_t wsize = size_t(F) * C;  // elements of one expert's w1, w3 or w2
  const int ld13 = 2 * F;
  for (int e = 0; e < E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    const T* x = inp + size_t(r0) * C;
    T* h = h13 + size_t(r0) * ld13;
    blas_gemm(Trans::No, Trans::Yes, n, F, C, T(1), x, C, w1 + e * wsize, C, T(0), h, ld13);
    blas_gemm(Trans::No, Trans::Yes, n, F, C, T(1), x, C, w3 + e * wsize, C, T(0), h + F, ld13);
  }
  const size_t first = size_t(offsets[0]);
  swiglu_forward(act + first * F, h13 + first * ld13, int(offsets[E] - offsets[0]), F);
  for (int e = 0; e < E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    blas_gemm(Trans::No, Trans::Yes, n, C, F, T(1), act + size_t(r0) * F, F, w2 + e * wsize, F, T(0),
              out + size_t(r0) * C, C);
  }
}

template <typename T>
void experts_backward(T* dinp, acc_t<T>* dw1, acc_t<T>* dw3, acc_t<T>* dw2, T* dh13, T* dact, const T* dout,
                      const T* inp, const T* h13, const T* act, const T* w1, const T* w3, const T* w2,
                      const int64_t* offsets, int E, int C, int F) {
  static_assert(std::is_same_v<acc_t<T>, T>, "the CPU backend computes in its accumulation type");
  check_sizes(offsets, E, C, F);
  const size_t wsize = size_t(F) * C;
  const int ld13 = 2 * F;
  for (int e = 0; e < E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    const T* g = dout + size_t(r0) * C;
    blas_gemm(Trans::No, Trans::No, n, F, C, T(1), g, C, w2 + e * wsize, F, T(0), dact + size_t(r0) * F, F);
    blas_gemm(Trans::Yes, Trans::No, C, F, n, T(1), g, C, act + size_t(r0) * F, F, T(1), dw2 + e * wsize, F);
  }
  const size_t first = size_t(offsets[0]);
  swiglu_backward(dh13 + first * ld13, dact + first * F, h13 + first * ld13, int(offsets[E] - offsets[0]), F);
  for (int e = 0; e < E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    const T* x = inp + size_t(r0) * C;
    const T* dh = dh13 + size_t(r0) * ld13;
    T* dx = dinp + size_t(r0) * C;
    blas_gemm(Trans::No, Trans::No, n, C, F, T(1), dh, ld13, w1 + e * wsize, C, T(0), dx, C);
    blas_gemm(Trans::No, Trans::No, n, C, F, T(1), dh + F, ld13, w3 + e * wsize, C, T(1), dx, C);
    blas_gemm(Trans::Yes, Trans::No, F, C, n, T(1), dh, ld13, x, C, T(1), dw1 + e * wsize, C);
    blas_gemm(Trans::Yes, Trans::No, F, C, n, T(1), dh + F, ld13, x, C, T(1), dw3 + e * wsize, C);
  }
}

template void experts_forward<float>(float*, float*, float*, const float*, const float*, const float*,
                                     const float*, const int64_t*, int, int, int);
template void experts_forward<double>(double*, double*, double*, const double*, const double*, const double*,
                                      const double*, const int64_t*, int, int, int);
template void experts_backward<float>(float*, float*, float*, float*, float*, float*, const float*, const float*,
                                      const float*, const float*, const float*, const float*, const float*,
                                      const int64_t*, int, int, int);
template void experts_backward<double>(double*, double*, double*, double*, double*, double*, const double*,
                                       const double*, const double*, const double*, const double*, const double*,
                                       const double*, const int64_t*, int, int, int);

}  // namespace mt::cpu
