// Why: causal ALiBi attention on the CPU, flash style: the S x S probabilities never outlive one block
// of queries. The forward saves only out and the log-sum-exp of each query's scores; the backward
// recomputes a block's probabilities from them. Each block's products are single-threaded OpenBLAS
// calls inside one OpenMP region (see blas.h: the OpenMP OpenBLAS then runs on the calling thread),
// reading Q, K, V straight out of the interleaved qkv rows through the leading dimension.
//
// Score(i, j) = q_i . k_j / sqrt(Dh) - slope_h (i - j) for keys j <= i; P = softmax over j.
// Backward, with D_i = dout_i . out_i: dV = P^T dO, dP = dO V^T, dS = P * (dP - D_i),
// dQ = dS K / sqrt(Dh), dK = dS^T Q / sqrt(Dh).
//
// Determinism: tasks write disjoint outputs and compute them in a fixed order, so which thread runs a
// task does not matter; that is why a dynamic schedule (for load balance over the causal triangle) is
// safe here. The backward's task is a whole (sequence, head): dK and dV sum over its query blocks.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/core/check.h"
#include "engine/cpu/blas.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/cpu/parallel.h"
#include "engine/cpu/vec_math.h"

namespace mt {
using namespace cpu;

namespace {

// Queries per block. A block computes scores against keys [0, end of block), so the masked half of
// the diagonal tile is wasted work (about kQueryBlock / (2 S) of the total); smaller blocks waste less
// but make smaller GEMMs. 64 measured best at S = 256..1024, Dh = 64.
constexpr int kQueryBlock = 64;

// Query blocks of a sequence of S tokens.
int query_blocks(int S) { return (S + kQueryBlock - 1) / kQueryBlock; }

// Multiply-adds of one product of the causal scores (B H S^2 Dh / 2), over 16: an attention loop is a
// few GEMMs per element, so it is worth a parallel region at 1/16 of the elementwise threshold.
size_t causal_work(int B, int S, int H, int Dh) { return size_t(B) * H * S * S * Dh / 2 / 16; }

}  // namespace

template <typename T>
void CpuOps<T>::attention_forward(T* out, acc_t<T>* lse, const T* qkv, const float* slopes, const AttnDims& dims) {
  const int B = dims.B, S = dims.S, H = dims.H, Dh = dims.Dh;
  dims.check();
  const int nq = query_blocks(S), ldq = dims.ld_qkv(), ldo = dims.ld_out();
  const int64_t tasks = int64_t(B) * H * nq;
  const T scale = T(1) / std::sqrt(T(Dh));
#pragma omp parallel if (causal_work(B, S, H, Dh) > cpu::kParallelMin)
  {
    std::vector<T> scores(size_t(kQueryBlock) * S);  // the block's scores, then its probabilities
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < tasks; ++task) {
      const int qb = nq - 1 - int(task % nq);  // the largest blocks of a head first
      const int bh = int(task / nq), b = bh / H, h = bh % H;
      const int i0 = qb * kQueryBlock, i1 = std::min(S, i0 + kQueryBlock), rows = i1 - i0, keys = i1;
      const T slope = T(slopes[h]);
      blas_gemm(Trans::No, Trans::Yes, rows, keys, Dh, scale, qkv + dims.qkv_at(b, i0, 0, h), ldq,
                qkv + dims.qkv_at(b, 0, 1, h), ldq, T(0), scores.data(), keys);
      for (int r = 0; r < rows; ++r) {
        const int i = i0 + r, n = i + 1;  // keys 0..i are visible to query i
        T* s = scores.data() + size_t(r) * keys;
        P mx = -std::numeric_limits<P>::infinity();
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < n; ++j) {
          s[j] += slope * T(j - i);
          mx = std::max(mx, P(s[j]));
        }
        P sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < n; ++j) {
          s[j] = vexp(T(P(s[j]) - mx));
          sum += P(s[j]);
        }
        lse[dims.lse_at(b, h, i)] = mx + std::log(sum);
        const T inv = T(P(1) / sum);
#pragma omp simd
        for (int j = 0; j < n; ++j) s[j] *= inv;
        std::fill(s + n, s + keys, T(0));
      }
      blas_gemm(Trans::No, Trans::No, rows, Dh, keys, T(1), scores.data(), keys, qkv + dims.qkv_at(b, 0, 2, h), ldq,
                T(0), out + dims.out_at(b, i0, h), ldo);
    }
  }
}

template <typename T>
void CpuOps<T>::attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const acc_t<T>* lse,
                                   const float* slopes, const AttnDims& dims) {
  const int B = dims.B, S = dims.S, H = dims.H, Dh = dims.Dh;
  dims.check();
  const int nq = query_blocks(S), ldq = dims.ld_qkv(), ldo = dims.ld_out();
  const int tasks = B * H;
  const T scale = T(1) / std::sqrt(T(Dh));
#pragma omp parallel if (causal_work(B, S, H, Dh) > cpu::kParallelMin)
  {
    std::vector<T> Pb(size_t(kQueryBlock) * S);  // the block's probabilities
    std::vector<T> dS(size_t(kQueryBlock) * S);  // dP, then dS
    std::vector<P> D(kQueryBlock);
#pragma omp for schedule(dynamic)
    for (int task = 0; task < tasks; ++task) {
      const int b = task / H, h = task % H;
      const T slope = T(slopes[h]);
      const P* lse_bh = lse + dims.lse_at(b, h, 0);
      const T* k = qkv + dims.qkv_at(b, 0, 1, h);
      const T* v = qkv + dims.qkv_at(b, 0, 2, h);
      T* dk = dqkv + dims.qkv_at(b, 0, 1, h);
      T* dv = dqkv + dims.qkv_at(b, 0, 2, h);
      for (int t = 0; t < S; ++t) {
        std::fill(dk + size_t(t) * ldq, dk + size_t(t) * ldq + Dh, T(0));
        std::fill(dv + size_t(t) * ldq, dv + size_t(t) * ldq + Dh, T(0));
      }
      for (int qb = 0; qb < nq; ++qb) {
        const int i0 = qb * kQueryBlock, i1 = std::min(S, i0 + kQueryBlock), rows = i1 - i0, keys = i1;
        const T* q = qkv + dims.qkv_at(b, i0, 0, h);
        const T* g = dout + dims.out_at(b, i0, h);
        const T* o = out + dims.out_at(b, i0, h);
        blas_gemm(Trans::No, Trans::Yes, rows, keys, Dh, scale, q, ldq, k, ldq, T(0), Pb.data(), keys);
        for (int r = 0; r < rows; ++r) {
          const int i = i0 + r, n = i + 1;
          T* p = Pb.data() + size_t(r) * keys;
          const P l = lse_bh[i];
#pragma omp simd
          for (int j = 0; j < n; ++j) p[j] = vexp(T(P(p[j] + slope * T(j - i)) - l));
          std::fill(p + n, p + keys, T(0));
          const T* gr = g + size_t(r) * ldo;
          const T* orow = o + size_t(r) * ldo;
          P d = 0;
#pragma omp simd reduction(+ : d)
          for (int c = 0; c < Dh; ++c) d += P(gr[c]) * P(orow[c]);
          D[r] = d;
        }
        // dV[0:keys] += P^T dO; dP = dO V^T.
        blas_gemm(Trans::Yes, Trans::No, keys, Dh, rows, T(1), Pb.data(), keys, g, ldo, T(1), dv, ldq);
        blas_gemm(Trans::No, Trans::Yes, rows, keys, Dh, T(1), g, ldo, v, ldq, T(0), dS.data(), keys);
        for (int r = 0; r < rows; ++r) {
          const T* p = Pb.data() + size_t(r) * keys;
          T* ds = dS.data() + size_t(r) * keys;
          const T dr = T(D[r]);
          const int n = i0 + r + 1;
#pragma omp simd
          for (int j = 0; j < n; ++j) ds[j] = p[j] * (ds[j] - dr);
          std::fill(ds + n, ds + keys, T(0));
        }
        // dQ (this block) = dS K / sqrt(Dh); dK[0:keys] += dS^T Q / sqrt(Dh).
        blas_gemm(Trans::No, Trans::No, rows, Dh, keys, scale, dS.data(), keys, k, ldq, T(0),
                  dqkv + dims.qkv_at(b, i0, 0, h), ldq);
        blas_gemm(Trans::Yes, Trans::No, keys, Dh, rows, scale, dS.data(), keys, q, ldq, T(1), dk, ldq);
      }
    }
  }
}

MT_CPU_INSTANTIATE(MT_OPS_ATTENTION)

}  // namespace mt
