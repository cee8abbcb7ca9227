// Why: the routed experts as a grouped SwiGLU, written once over the op interface for every backend.
// The rows arrive sorted by expert (offsets on the host), so each expert is a few plain GEMMs on its
// contiguous block of rows, and the SwiGLU in between runs once over all rows. Experts that received
// no rows are skipped. (On a GPU the GEMMs are queued back to back on the one stream; a grouped
// kernel would serve many small experts better: future work.)
//
// Expert e owns rows [offsets[e], offsets[e+1]) of inp (R, Dm) (offsets host, E+1 entries); w1, w3
// (E, F, Dm), w2 (E, Dm, F). Per expert with rows x (n, Dm): h13 = [x w1_e^T | x w3_e^T] (n, 2F),
// act = swiglu(h13) (n, F), out = act w2_e^T (n, Dm); h13 and act are saved for the backward.
// Backward: dact = dout w2_e, dw2_e += dout^T act, dh13 = swiglu'(dact), dinp = dh13[:, :F] w1_e +
// dh13[:, F:] w3_e (written), dw1_e += dh13[:, :F]^T x, dw3_e += dh13[:, F:]^T x; dh13 and dact are scratch,
// and dinp_acc (R, Dm) in acc_t when T is bf16 (the two products summed in fp32, rounded once; else unused).
#pragma once

#include <climits>
#include <cstdint>
#include <type_traits>

#include "engine/core/check.h"
#include "engine/ops/ops.h"

namespace mt {

inline void check_expert_offsets(const int64_t* offsets, int E, int Dm, int F) {
  MT_CHECK(E >= 0 && Dm > 0 && F > 0, "experts: E ", E, " Dm ", Dm, " F ", F);
  MT_CHECK(offsets[0] >= 0, "experts: offsets[0] = ", offsets[0]);
  for (int e = 0; e < E; ++e)
    MT_CHECK(offsets[e + 1] >= offsets[e] && offsets[e + 1] <= INT32_MAX, "experts: offsets[", e + 1, "] = ",
             offsets[e + 1], " after ", offsets[e]);
}

template <typename T>
void experts_forward(Ops<T>& ops, T* out, T* h13, T* act, const T* inp, const T* w1, const T* w3, const T* w2,
                     const int64_t* offsets, int E, int Dm, int F) {
  check_expert_offsets(offsets, E, Dm, F);
  const size_t wsize = size_t(F) * Dm;  // elements of one expert's w1, w3 or w2
  const int ld13 = 2 * F;
  for (int e = 0; e < E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    const T* x = inp + size_t(r0) * Dm;
    T* h = h13 + size_t(r0) * ld13;
    const GemmShape up = GemmShape::nt(n, F, Dm).with_ld(Dm, Dm, ld13);
    ops.gemm(h, x, w1 + e * wsize, up, 1.f, 0.f);
    ops.gemm(h + F, x, w3 + e * wsize, up, 1.f, 0.f);
  }
  const size_t first = size_t(offsets[0]);
  ops.swiglu_forward(act + first * F, h13 + first * ld13, int(offsets[E] - offsets[0]), F);
  for (int e = 0; e < E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    ops.gemm(out + size_t(r0) * Dm, act + size_t(r0) * F, w2 + e * wsize, GemmShape::nt(n, Dm, F), 1.f, 0.f);
  }
}

template <typename T>
void experts_backward(Ops<T>& ops, T* dinp, acc_t<T>* dw1, acc_t<T>* dw3, acc_t<T>* dw2, T* dh13, T* dact,
                      acc_t<T>* dinp_acc, const T* dout, const T* inp, const T* h13, const T* act, const T* w1, const T* w3, const T* w2,
                      const int64_t* offsets, int E, int Dm, int F) {
  check_expert_offsets(offsets, E, Dm, F);
  const size_t wsize = size_t(F) * Dm;
  const int ld13 = 2 * F;
  for (int e = 0; e < E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    const T* g = dout + size_t(r0) * Dm;
    ops.gemm(dact + size_t(r0) * F, g, w2 + e * wsize, GemmShape::nn(n, F, Dm), 1.f, 0.f);
    ops.gemm_acc(dw2 + e * wsize, g, act + size_t(r0) * F, GemmShape::tn(Dm, F, n), 1.f, 1.f);
  }
  const size_t first = size_t(offsets[0]);
  ops.swiglu_backward(dh13 + first * ld13, dact + first * F, h13 + first * ld13, int(offsets[E] - offsets[0]), F);
  for (int e = 0; e < E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    const T* x = inp + size_t(r0) * Dm;
    const T* dh = dh13 + size_t(r0) * ld13;
    T* dx = dinp + size_t(r0) * Dm;
    const GemmShape down = GemmShape::nn(n, Dm, F).with_ld(ld13, Dm, Dm);
    if constexpr (std::is_same_v<T, acc_t<T>>) {
      ops.gemm(dx, dh, w1 + e * wsize, down, 1.f, 0.f);
      ops.gemm(dx, dh + F, w3 + e * wsize, down, 1.f, 1.f);
    } else {  // bf16: the two products summed in fp32 and rounded once
      acc_t<T>* acc = dinp_acc + size_t(r0) * Dm;
      ops.gemm_acc(acc, dh, w1 + e * wsize, down, 1.f, 0.f);
      ops.gemm_acc(acc, dh + F, w3 + e * wsize, down, 1.f, 1.f);
      ops.to_compute(dx, acc, size_t(n) * Dm);
    }
    const GemmShape dw = GemmShape::tn(F, Dm, n).with_ld(ld13, Dm, Dm);
    ops.gemm_acc(dw1 + e * wsize, dh, x, dw, 1.f, 1.f);
    ops.gemm_acc(dw3 + e * wsize, dh + F, x, dw, 1.f, 1.f);
  }
}

}  // namespace mt
