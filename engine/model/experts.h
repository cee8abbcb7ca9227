// Why: the routed experts as a grouped SwiGLU, written once over the op interface for every backend.
// The rows arrive sorted by expert (offsets on the host), so each expert is a few plain GEMMs on its
// contiguous block of rows, and the SwiGLU in between runs once over all rows. Experts that received
// no rows are skipped.
//
// Expert e owns rows [offsets[e], offsets[e+1]) of inp (R, Dm) (offsets host, E+1 entries); w1, w3
// (E, F, Dm), w2 (E, Dm, F). Per expert with rows x (n, Dm): h13 = [x w1_e^T | x w3_e^T] (n, 2F),
// act = swiglu(h13) (n, F), out = act w2_e^T (n, Dm); h13 and act are saved for the backward.
// Backward: dact = dout w2_e, dw2_e += dout^T act, dh13 = swiglu'(dact), dinp = dh13[:, :F] w1_e +
// dh13[:, F:] w3_e (written), dw1_e += dh13[:, :F]^T x, dw3_e += dh13[:, F:]^T x. The scratch holds
// dh13 and dact, and dinp_acc (R, Dm) in acc_t when T is bf16 (the two products summed in fp32,
// rounded once; else unused).
#pragma once

#include <climits>
#include <cstdint>
#include <type_traits>

#include "engine/core/check.h"
#include "engine/model/ops.h"

namespace mt {

// E experts (on this rank) of model width Dm and hidden width F.
struct ExpertDims {
  int E = 0, Dm = 0, F = 0;
};

// The three weights of E experts, or their gradients (X = acc_t<T>).
template <typename X>
struct ExpertWeights {
  X* w1 = nullptr;  // (E, F, Dm) gate
  X* w3 = nullptr;  // (E, F, Dm) up
  X* w2 = nullptr;  // (E, Dm, F) down
};

// What the forward saves for the backward.
template <typename X>
struct ExpertActivations {
  X* h13 = nullptr;  // (R, 2F) [x w1^T | x w3^T]
  X* act = nullptr;  // (R, F) swiglu(h13)
};

// The backward's scratch (used within one call).
template <typename T>
struct ExpertScratch {
  T* dh13 = nullptr;            // (R, 2F)
  T* dact = nullptr;            // (R, F)
  acc_t<T>* dinp_acc = nullptr; // (R, Dm) when T is not acc_t<T>, else unused
};

inline void check_expert_offsets(const int64_t* offsets, const ExpertDims& d) {
  MT_CHECK(d.E >= 0 && d.Dm > 0 && d.F > 0, "experts: E ", d.E, " Dm ", d.Dm, " F ", d.F);
  MT_CHECK(offsets[0] >= 0, "experts: offsets[0] = ", offsets[0]);
  for (int e = 0; e < d.E; ++e)
    MT_CHECK(offsets[e + 1] >= offsets[e] && offsets[e + 1] <= INT32_MAX, "experts: offsets[", e + 1, "] = ",
             offsets[e + 1], " after ", offsets[e]);
}

// out (R, Dm) =; saved written.
template <typename T>
void experts_forward(Ops<T>& ops, T* out, const ExpertActivations<T>& saved, const T* inp,
                     const ExpertWeights<const T>& w, const int64_t* offsets, const ExpertDims& d) {
  check_expert_offsets(offsets, d);
  const int Dm = d.Dm, F = d.F;
  const size_t wsize = size_t(F) * Dm;  // elements of one expert's w1, w3 or w2
  const int ld13 = 2 * F;
  for (int e = 0; e < d.E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    const T* x = inp + size_t(r0) * Dm;
    T* h = saved.h13 + size_t(r0) * ld13;
    const GemmShape up = GemmShape::nt(n, F, Dm).with_ld(Dm, Dm, ld13);
    ops.gemm(h, x, w.w1 + e * wsize, up, 1.f, 0.f);
    ops.gemm(h + F, x, w.w3 + e * wsize, up, 1.f, 0.f);
  }
  const size_t first = size_t(offsets[0]);
  ops.swiglu_forward(saved.act + first * F, saved.h13 + first * ld13, int(offsets[d.E] - offsets[0]), F);
  for (int e = 0; e < d.E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    ops.gemm(out + size_t(r0) * Dm, saved.act + size_t(r0) * F, w.w2 + e * wsize, GemmShape::nt(n, Dm, F), 1.f,
             0.f);
  }
}

// dinp (R, Dm) =, dw +=; dout (R, Dm) is the output's gradient.
template <typename T>
void experts_backward(Ops<T>& ops, T* dinp, const ExpertWeights<acc_t<T>>& dw, const ExpertScratch<T>& scratch,
                      const T* dout, const T* inp, const ExpertActivations<const T>& saved,
                      const ExpertWeights<const T>& w, const int64_t* offsets, const ExpertDims& d) {
  check_expert_offsets(offsets, d);
  const int Dm = d.Dm, F = d.F;
  const size_t wsize = size_t(F) * Dm;
  const int ld13 = 2 * F;
  for (int e = 0; e < d.E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    const T* g = dout + size_t(r0) * Dm;
    ops.gemm(scratch.dact + size_t(r0) * F, g, w.w2 + e * wsize, GemmShape::nn(n, F, Dm), 1.f, 0.f);
    ops.gemm_acc(dw.w2 + e * wsize, g, saved.act + size_t(r0) * F, GemmShape::tn(Dm, F, n), 1.f, 1.f);
  }
  const size_t first = size_t(offsets[0]);
  ops.swiglu_backward(scratch.dh13 + first * ld13, scratch.dact + first * F, saved.h13 + first * ld13,
                      int(offsets[d.E] - offsets[0]), F);
  for (int e = 0; e < d.E; ++e) {
    const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
    if (n == 0) continue;
    const T* x = inp + size_t(r0) * Dm;
    const T* dh = scratch.dh13 + size_t(r0) * ld13;
    T* dx = dinp + size_t(r0) * Dm;
    const GemmShape down = GemmShape::nn(n, Dm, F).with_ld(ld13, Dm, Dm);
    if constexpr (std::is_same_v<T, acc_t<T>>) {
      ops.gemm(dx, dh, w.w1 + e * wsize, down, 1.f, 0.f);
      ops.gemm(dx, dh + F, w.w3 + e * wsize, down, 1.f, 1.f);
    } else {  // bf16: the two products summed in fp32 and rounded once
      acc_t<T>* acc = scratch.dinp_acc + size_t(r0) * Dm;
      ops.gemm_acc(acc, dh, w.w1 + e * wsize, down, 1.f, 0.f);
      ops.gemm_acc(acc, dh + F, w.w3 + e * wsize, down, 1.f, 1.f);
      ops.to_compute(dx, acc, size_t(n) * Dm);
    }
    const GemmShape dwshape = GemmShape::tn(F, Dm, n).with_ld(ld13, Dm, Dm);
    ops.gemm_acc(dw.w1 + e * wsize, dh, x, dwshape, 1.f, 1.f);
    ops.gemm_acc(dw.w3 + e * wsize, dh + F, x, dwshape, 1.f, 1.f);
  }
}

}  // namespace mt
