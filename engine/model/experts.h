// Why: the routed experts as a grouped SwiGLU, written once over the op interface for every backend: per
// projection ONE grouped linear op over all local experts (engine/ops/ops.h grouped_linear_*), with the experts'
// row offsets on the device, so nothing here needs the rows per expert on the host. w1 and w3 run as one
// projection, a weight stacked from the two tensors (the checkpoint keeps them apart).
//
// Expert e owns rows [offsets[e], offsets[e+1]) of inp (rows, Dm) (offsets device, E + 1 entries from
// 0; rows = what the buffers hold, at least offsets[E]); w1, w3 (E, F, Dm), w2 (E, Dm, F). Per expert
// with rows x (n, Dm): h13 = [x w1_e^T | x w3_e^T] (n, 2F), act = swiglu(h13) (n, F), out = act w2_e^T
// (n, Dm); h13 and act are saved for the backward. The SwiGLU runs over all `rows` (those past
// offsets[E] hold stale values that no GEMM reads). Backward: dact = dout w2_e, dw2_e += dout^T act,
// dh13 = swiglu'(dact), dinp = dh13 [w1_e ; w3_e] (written), [dw1_e ; dw3_e] += dh13^T x.
#pragma once

#include "engine/ops/ops.h"

namespace mt {

// E experts (on this rank) of model width Dm and hidden width F; the row buffers hold `rows` rows.
struct ExpertDims {
  int E = 0, Dm = 0, F = 0, rows = 0;
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
  X* h13 = nullptr;  // (rows, 2F) [x w1^T | x w3^T]
  X* act = nullptr;  // (rows, F) swiglu(h13)
};

// The backward's scratch (used within one call).
template <typename T>
struct ExpertScratch {
  T* dh13 = nullptr;  // (rows, 2F)
  T* dact = nullptr;  // (rows, F)
};

// The up projection (w1 | w3 stacked: one grouped op) and the down projection.
inline GroupedLinearDims expert_up_dims(const ExpertDims& d) { return {d.E, d.Dm, 2 * d.F, d.F, d.rows}; }
inline GroupedLinearDims expert_down_dims(const ExpertDims& d) { return {d.E, d.F, d.Dm, d.Dm, d.rows}; }

// out (rows, Dm) =; saved written.
template <typename T>
void experts_forward(Ops<T>& ops, T* out, const ExpertActivations<T>& saved, const T* inp,
                     const ExpertWeights<const T>& w, const int64_t* offsets, const ExpertDims& d) {
  ops.grouped_linear_forward(saved.h13, inp, {w.w1, w.w3}, offsets, expert_up_dims(d));
  ops.swiglu_forward(saved.act, saved.h13, d.rows, d.F);
  ops.grouped_linear_forward(out, saved.act, {w.w2, nullptr}, offsets, expert_down_dims(d));
}

// dinp (rows, Dm) =, dw +=; dout (rows, Dm) is the output's gradient.
template <typename T>
void experts_backward(Ops<T>& ops, T* dinp, const ExpertWeights<acc_t<T>>& dw, const ExpertScratch<T>& scratch,
                      const T* dout, const T* inp, const ExpertActivations<const T>& saved,
                      const ExpertWeights<const T>& w, const int64_t* offsets, const ExpertDims& d) {
  ops.grouped_linear_backward(scratch.dact, {dw.w2, nullptr}, dout, saved.act, {w.w2, nullptr}, offsets,
                              expert_down_dims(d));
  ops.swiglu_backward(scratch.dh13, scratch.dact, saved.h13, d.rows, d.F);
  ops.grouped_linear_backward(dinp, {dw.w1, dw.w3}, scratch.dh13, inp, {w.w1, w.w3}, offsets, expert_up_dims(d));
}

}  // namespace mt
