// Why: the sizes that travel together through the op interface (engine/ops/ops.h), one struct each, so
// that their order cannot be mixed up: a GEMM's shape, attention's B, S, H, Dh, routing's N, E, K,
// dispatch / combine's N, K, Dm, a permute's R, Dm and the grouped linear layers' groups. Backends and
// the model include this without each other.
#pragma once

#include <cstddef>

// Small methods that the CUDA kernels call too.
#ifdef __CUDACC__
#define MT_HOST_DEVICE __host__ __device__
#else
#define MT_HOST_DEVICE
#endif

namespace mt {

enum class Trans { No, Yes };

// Row-major C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C. op(A) is A (m x k, leading
// dimension lda) or A^T (A stored k x m); likewise B. ldc is C's leading dimension.
struct GemmShape {
  Trans trans_a = Trans::No;
  Trans trans_b = Trans::No;
  int m = 0, n = 0, k = 0;
  int lda = 0, ldb = 0, ldc = 0;

  // Dense operands (each leading dimension the stored row length): A B, A B^T (y = x W^T) and A^T B.
  static GemmShape nn(int m, int n, int k) { return {Trans::No, Trans::No, m, n, k, k, n, n}; }
  static GemmShape nt(int m, int n, int k) { return {Trans::No, Trans::Yes, m, n, k, k, k, n}; }
  static GemmShape tn(int m, int n, int k) { return {Trans::Yes, Trans::No, m, n, k, m, n, n}; }
  // The same shape on strided operands (a column block of a wider matrix).
  GemmShape with_ld(int a, int b, int c) const { return {trans_a, trans_b, m, n, k, a, b, c}; }
  // Every backend calls this first: sizes >= 0 and leading dimensions that hold the rows (a wrong one
  // would read out of bounds silently).
  void check() const;
};

// Causal attention over B sequences of S tokens with H heads of Dh, and the layouts of its tensors, the
// same on every backend (host and device code): qkv and dqkv (B, S, 3, H, Dh), out and dout (B, S, H,
// Dh), lse (B, H, S).
struct AttnDims {
  int B = 0, S = 0, H = 0, Dh = 0;

  // Elements between consecutive tokens of qkv / dqkv, and of out / dout.
  MT_HOST_DEVICE int ld_qkv() const { return 3 * H * Dh; }
  MT_HOST_DEVICE int ld_out() const { return H * Dh; }
  // Offset of token t of sequence b, head h, part 0 (q), 1 (k) or 2 (v) in qkv / dqkv.
  MT_HOST_DEVICE size_t qkv_at(int b, int t, int part, int h) const {
    return (size_t(b) * S + t) * (3 * size_t(H) * Dh) + (size_t(part) * H + h) * Dh;
  }
  // Offset of token t of sequence b, head h in out / dout.
  MT_HOST_DEVICE size_t out_at(int b, int t, int h) const {
    return (size_t(b) * S + t) * (size_t(H) * Dh) + size_t(h) * Dh;
  }
  // Offset of token t of sequence b, head h in lse.
  MT_HOST_DEVICE size_t lse_at(int b, int h, int t) const { return (size_t(b) * H + h) * S + t; }
  // Every backend calls this first: B, S >= 0 and H, Dh > 0.
  void check() const;
};

// Routing of N tokens to K of E experts.
struct RouteDims {
  int N = 0, E = 0, K = 0;
};

// Dispatch / combine of N tokens of width Dm, each with K choices (slot and gates are (N, K)).
struct DispatchDims {
  int N = 0, K = 0, Dm = 0;
};

// A gather of R rows of width Dm.
struct PermuteDims {
  int R = 0, Dm = 0;
};

// The per-group linear layers of the routed experts: G groups (experts) of rows, each with its own
// weight W_g (Out, In). `rows` is what the row buffers hold (an upper bound of the rows in use, known
// on the host without reading the device); W_g's rows [0, split) come from one tensor and rows
// [split, Out) from a second (two tensors stacked along Out), or all from one (split = Out).
struct GroupedLinearDims {
  int G = 0, In = 0, Out = 0, split = 0, rows = 0;
};

// The weights (or weight gradients) of G groups: W_g's first `split` rows at top + g split In, the
// others at bottom + g (Out - split) In (bottom null when split = Out).
template <typename X>
struct StackedWeight {
  X* top = nullptr;
  X* bottom = nullptr;
};

}  // namespace mt
