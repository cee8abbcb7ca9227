// Why: causal ALiBi attention of CudaOps<T> in the flash style: the S x S scores never reach global
// memory (bf16 runs cuDNN's fused attention instead when the context says so: cudnn_attention.h). The
// forward walks the key tiles of one query tile with an online softmax (running max m and sum l per
// query row) and saves only out and lse = m + log l; the backward recomputes each tile's probabilities
// from lse. Extra memory is O(S) per head (lse, and D_i = dout_i . out_i).
//
// Score(i, j) = q_i . k_j / sqrt(Dh) - slope_h (i - j) for keys j <= i; P = softmax over j.
// Backward: dV = P^T dO, dP = dO V^T, dS = P * (dP - D_i), dQ = dS K / sqrt(Dh), dK = dS^T Q / sqrt(Dh).
// dQ sums over key tiles and dK, dV over query tiles; instead of float atomics (non-deterministic), the
// backward is two kernels: one per key tile (dK, dV) and one per query tile (dQ), each recomputing the
// scores it needs. That costs 7 instead of 5 tile products, but every gradient has the same bits on
// every run.
//
// Work split (all three kernels): a block of 8 warps owns a tile of BR = 8 * RPW rows (queries, or keys
// for dK/dV), RPW rows per warp, and loops over tiles of BC = 32 * CPL "other" rows. A lane computes the
// products of its warp's RPW rows with CPL columns (lane, lane + 32, ...), reading the other tile from
// shared memory column-wise; the per-row results are then broadcast through shared memory to
// accumulate outputs whose head dimension is split over the lanes (d = lane, lane + 32, ...). Tiles are
// stored as fp32 in shared memory with rows padded to D + 1 floats, so that both the column-wise
// (lanes over rows) and the row-wise (lanes over d) reads are free of bank conflicts. Dh is padded
// with zeros to D, a multiple of 32 (32, 64, 128 or 256). Arithmetic is fp32 throughout; these kernels
// use the FMA units: fp32 runs, and bf16 runs whose head dimension the tensor-core kernels
// (flash_attention.cu) do not support.
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "cuda/attention_rows.cuh"
#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/cudnn_attention.h"
#include "cuda/flash_attention.h"

namespace mt::cuda {

namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;

// Loads rows [r0, r0 + rows) of one head's part into a padded fp32 tile (rows x (D + 1)), times `mul`;
// rows past S and columns past Dh are zero.
template <int D, typename Dt>
__device__ void load_tile(float* tile, int rows, const Dt* base, size_t row_stride, int r0, int S, int Dh,
                          float mul) {
  for (int idx = threadIdx.x; idx < rows * D; idx += blockDim.x) {
    const int r = idx / D, d = idx % D, t = r0 + r;
    float v = 0.f;
    if (t < S && d < Dh) v = to_f(base[size_t(t) * row_stride + d]) * mul;
    tile[r * (D + 1) + d] = v;
  }
}

// ---- forward ------------------------------------------------------------------------------------------------
template <typename Dt, int D, int RPW, int CPL>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(Dt* out, float* lse, const Dt* qkv,
                                                                      const float* slopes, AttnDims g,
                                                                      float scale) {
  constexpr int BR = kWarps * RPW, BC = 32 * CPL, LD = D + 1, DL = D / 32;
  extern __shared__ float smem[];
  float* Qs = smem;             // (BR, LD), pre-scaled by 1/sqrt(Dh)
  float* Ks = Qs + BR * LD;     // (BC, LD)
  float* Vs = Ks + BC * LD;     // (BC, LD)
  float* Ps = Vs + BC * LD;     // (BR, BC) probabilities of the current tile

  const int BH = g.B * g.H, n_tiles = (g.S + BR - 1) / BR;
  const int qt = n_tiles - 1 - int(blockIdx.x / BH);  // the longest (last) query tiles first
  const int bh = int(blockIdx.x % BH), b = bh / g.H, h = bh % g.H;
  const int i0 = qt * BR, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const float slope = slopes[h];
  const size_t ld_qkv = g.ld_qkv();

  load_tile<D>(Qs, BR, qkv + g.qkv_at(b, 0, 0, h), ld_qkv, i0, g.S, g.Dh, scale);

  float o[RPW][DL], m[RPW], l[RPW];
#pragma unroll
  for (int rr = 0; rr < RPW; ++rr) {
    m[rr] = -INFINITY;
    l[rr] = 0.f;
#pragma unroll
    for (int dd = 0; dd < DL; ++dd) o[rr][dd] = 0.f;
  }

  const int i_last = min(i0 + BR, g.S) - 1;  // keys beyond the tile's last query are all masked
  for (int j0 = 0; j0 <= i_last; j0 += BC) {
    __syncthreads();  // the previous tile's K, V are no longer read
    load_tile<D>(Ks, BC, qkv + g.qkv_at(b, 0, 1, h), ld_qkv, j0, g.S, g.Dh, 1.f);
    load_tile<D>(Vs, BC, qkv + g.qkv_at(b, 0, 2, h), ld_qkv, j0, g.S, g.Dh, 1.f);
    __syncthreads();

    float s[RPW][CPL];
#pragma unroll
    for (int rr = 0; rr < RPW; ++rr)
#pragma unroll
      for (int cc = 0; cc < CPL; ++cc) s[rr][cc] = 0.f;
#pragma unroll 4
    for (int d = 0; d < D; ++d) {
      float k[CPL];
#pragma unroll
      for (int cc = 0; cc < CPL; ++cc) k[cc] = Ks[(lane + 32 * cc) * LD + d];
#pragma unroll
      for (int rr = 0; rr < RPW; ++rr) {
        const float q = Qs[(warp * RPW + rr) * LD + d];
#pragma unroll
        for (int cc = 0; cc < CPL; ++cc) s[rr][cc] += q * k[cc];
      }
    }

#pragma unroll
    for (int rr = 0; rr < RPW; ++rr) {
      const int i = i0 + warp * RPW + rr;
      float tile_max = -INFINITY;
#pragma unroll
      for (int cc = 0; cc < CPL; ++cc) {
        const int j = j0 + lane + 32 * cc;
        s[rr][cc] = j <= i ? s[rr][cc] - slope * float(i - j) : -INFINITY;
        tile_max = fmaxf(tile_max, s[rr][cc]);
      }
      tile_max = warp_max(tile_max);
      // Key 0 is visible to every row and lies in the first tile, so m is finite from then on.
      const float m_new = fmaxf(m[rr], tile_max);
      const float corr = expf(m[rr] - m_new);
      float psum = 0.f;
#pragma unroll
      for (int cc = 0; cc < CPL; ++cc) {
        const float p = expf(s[rr][cc] - m_new);
        psum += p;
        Ps[(warp * RPW + rr) * BC + lane + 32 * cc] = p;
      }
      l[rr] = l[rr] * corr + warp_sum(psum);
      m[rr] = m_new;
#pragma unroll
      for (int dd = 0; dd < DL; ++dd) o[rr][dd] *= corr;
    }
    __syncwarp();  // a warp reads only its own rows of Ps

    for (int c = 0; c < BC; ++c) {
      float v[DL];
#pragma unroll
      for (int dd = 0; dd < DL; ++dd) v[dd] = Vs[c * LD + lane + 32 * dd];
#pragma unroll
      for (int rr = 0; rr < RPW; ++rr) {
        const float p = Ps[(warp * RPW + rr) * BC + c];
#pragma unroll
        for (int dd = 0; dd < DL; ++dd) o[rr][dd] += p * v[dd];
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < RPW; ++rr) {
    const int i = i0 + warp * RPW + rr;
    if (i >= g.S) continue;
    const float inv = 1.f / l[rr];
    Dt* dst = out + g.out_at(b, i, h);
#pragma unroll
    for (int dd = 0; dd < DL; ++dd) {
      const int d = lane + 32 * dd;
      if (d < g.Dh) dst[d] = from_f<Dt>(o[rr][dd] * inv);
    }
    if (lane == 0) lse[g.lse_at(b, h, i)] = m[rr] + logf(l[rr]);
  }
}

// ---- backward: dQ for one query tile -------------------------------------------------------------------------
// The backward's two score products, register-blocked: for the warp's RPW rows (rr) and the lane's CPL
// columns (cc), s[rr][cc] = A[row] . B[col] and dp[rr][cc] = C[row] . E[col] over D, with rows
// warp * RPW + rr of A and C and columns lane + 32 cc of B and E, each tile (rows, LD) in shared memory.
// dQ uses (Q, dout; K, V), dK dV use (K, V; Q, dout).
template <int D, int RPW, int CPL, int LD>
__device__ __forceinline__ void two_dots(float (&s)[RPW][CPL], float (&dp)[RPW][CPL], const float* A, const float* C,
                                         const float* B, const float* E, int warp, int lane) {
#pragma unroll
  for (int rr = 0; rr < RPW; ++rr)
#pragma unroll
    for (int cc = 0; cc < CPL; ++cc) s[rr][cc] = dp[rr][cc] = 0.f;
#pragma unroll 2
  for (int d = 0; d < D; ++d) {
    float b[CPL], e[CPL];
#pragma unroll
    for (int cc = 0; cc < CPL; ++cc) {
      b[cc] = B[(lane + 32 * cc) * LD + d];
      e[cc] = E[(lane + 32 * cc) * LD + d];
    }
#pragma unroll
    for (int rr = 0; rr < RPW; ++rr) {
      const float a = A[(warp * RPW + rr) * LD + d], c = C[(warp * RPW + rr) * LD + d];
#pragma unroll
      for (int cc = 0; cc < CPL; ++cc) {
        s[rr][cc] += a * b[cc];
        dp[rr][cc] += c * e[cc];
      }
    }
  }
}

template <typename Dt, int D, int RPW, int CPL>
__global__ void __launch_bounds__(kThreads) attention_dq_kernel(Dt* dqkv, const Dt* dout, const Dt* qkv,
                                                                 const float* lse, const float* dvec,
                                                                 const float* slopes, AttnDims g,
                                                                 float scale) {
  constexpr int BR = kWarps * RPW, BC = 32 * CPL, LD = D + 1, DL = D / 32;
  extern __shared__ float smem[];
  float* Qs = smem;            // (BR, LD), pre-scaled
  float* Gs = Qs + BR * LD;    // (BR, LD) dout
  float* Ks = Gs + BR * LD;    // (BC, LD)
  float* Vs = Ks + BC * LD;    // (BC, LD)
  float* Ss = Vs + BC * LD;    // (BR, BC) dS of the current tile

  const int BH = g.B * g.H, n_tiles = (g.S + BR - 1) / BR;
  const int qt = n_tiles - 1 - int(blockIdx.x / BH);
  const int bh = int(blockIdx.x % BH), b = bh / g.H, h = bh % g.H;
  const int i0 = qt * BR, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const float slope = slopes[h];
  const size_t ld_qkv = g.ld_qkv(), ld_out = g.ld_out();

  load_tile<D>(Qs, BR, qkv + g.qkv_at(b, 0, 0, h), ld_qkv, i0, g.S, g.Dh, scale);
  load_tile<D>(Gs, BR, dout + g.out_at(b, 0, h), ld_out, i0, g.S, g.Dh, 1.f);

  float dq[RPW][DL], row_lse[RPW], row_d[RPW];
#pragma unroll
  for (int rr = 0; rr < RPW; ++rr) {
    const int i = i0 + warp * RPW + rr;
    row_lse[rr] = i < g.S ? lse[g.lse_at(b, h, i)] : 0.f;
    row_d[rr] = i < g.S ? dvec[g.lse_at(b, h, i)] : 0.f;
#pragma unroll
    for (int dd = 0; dd < DL; ++dd) dq[rr][dd] = 0.f;
  }

  const int i_last = min(i0 + BR, g.S) - 1;
  for (int j0 = 0; j0 <= i_last; j0 += BC) {
    __syncthreads();
    load_tile<D>(Ks, BC, qkv + g.qkv_at(b, 0, 1, h), ld_qkv, j0, g.S, g.Dh, 1.f);
    load_tile<D>(Vs, BC, qkv + g.qkv_at(b, 0, 2, h), ld_qkv, j0, g.S, g.Dh, 1.f);
    __syncthreads();

    float s[RPW][CPL], dp[RPW][CPL];
    two_dots<D, RPW, CPL, LD>(s, dp, Qs, Gs, Ks, Vs, warp, lane);
#pragma unroll
    for (int rr = 0; rr < RPW; ++rr) {
      const int i = i0 + warp * RPW + rr;
#pragma unroll
      for (int cc = 0; cc < CPL; ++cc) {
        const int j = j0 + lane + 32 * cc;
        const float p = (j <= i && i < g.S) ? expf(s[rr][cc] - slope * float(i - j) - row_lse[rr]) : 0.f;
        Ss[(warp * RPW + rr) * BC + lane + 32 * cc] = p * (dp[rr][cc] - row_d[rr]);
      }
    }
    __syncwarp();
    for (int c = 0; c < BC; ++c) {
      float k[DL];
#pragma unroll
      for (int dd = 0; dd < DL; ++dd) k[dd] = Ks[c * LD + lane + 32 * dd];
#pragma unroll
      for (int rr = 0; rr < RPW; ++rr) {
        const float ds = Ss[(warp * RPW + rr) * BC + c];
#pragma unroll
        for (int dd = 0; dd < DL; ++dd) dq[rr][dd] += ds * k[dd];
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < RPW; ++rr) {
    const int i = i0 + warp * RPW + rr;
    if (i >= g.S) continue;
    Dt* dst = dqkv + g.qkv_at(b, i, 0, h);
#pragma unroll
    for (int dd = 0; dd < DL; ++dd) {
      const int d = lane + 32 * dd;
      if (d < g.Dh) dst[d] = from_f<Dt>(dq[rr][dd] * scale);
    }
  }
}

// ---- backward: dK, dV for one key tile (the warps' rows are keys, the columns queries) ---------------------
template <typename Dt, int D, int RPW, int CPL>
__global__ void __launch_bounds__(kThreads) attention_dkv_kernel(Dt* dqkv, const Dt* dout, const Dt* qkv,
                                                                  const float* lse, const float* dvec,
                                                                  const float* slopes, AttnDims g,
                                                                  float scale) {
  constexpr int BR = kWarps * RPW, BC = 32 * CPL, LD = D + 1, DL = D / 32;
  extern __shared__ float smem[];
  float* Ks = smem;            // (BR, LD) this block's keys
  float* Vs = Ks + BR * LD;    // (BR, LD)
  float* Qs = Vs + BR * LD;    // (BC, LD) the current query tile, pre-scaled
  float* Gs = Qs + BC * LD;    // (BC, LD) its dout
  float* Ps = Gs + BC * LD;    // (BR, BC) P^T of the tile
  float* Ss = Ps + BR * BC;    // (BR, BC) dS^T of the tile
  float* Ls = Ss + BR * BC;    // (BC) lse of the tile's queries
  float* Ds = Ls + BC;         // (BC) D of the tile's queries

  const int BH = g.B * g.H;
  // Key tile kt sees the queries from j0 on: the first key tiles have the most work.
  const int kt = int(blockIdx.x / BH);
  const int bh = int(blockIdx.x % BH), b = bh / g.H, h = bh % g.H;
  const int j0 = kt * BR, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const float slope = slopes[h];
  const size_t ld_qkv = g.ld_qkv(), ld_out = g.ld_out();

  load_tile<D>(Ks, BR, qkv + g.qkv_at(b, 0, 1, h), ld_qkv, j0, g.S, g.Dh, 1.f);
  load_tile<D>(Vs, BR, qkv + g.qkv_at(b, 0, 2, h), ld_qkv, j0, g.S, g.Dh, 1.f);

  float dk[RPW][DL], dv[RPW][DL];
#pragma unroll
  for (int rr = 0; rr < RPW; ++rr)
#pragma unroll
    for (int dd = 0; dd < DL; ++dd) dk[rr][dd] = dv[rr][dd] = 0.f;

  // Query tiles of width BC starting at the one that holds query j0.
  for (int i0 = (j0 / BC) * BC; i0 < g.S; i0 += BC) {
    __syncthreads();
    load_tile<D>(Qs, BC, qkv + g.qkv_at(b, 0, 0, h), ld_qkv, i0, g.S, g.Dh, scale);
    load_tile<D>(Gs, BC, dout + g.out_at(b, 0, h), ld_out, i0, g.S, g.Dh, 1.f);
    for (int c = threadIdx.x; c < BC; c += blockDim.x) {
      const int i = i0 + c;
      Ls[c] = i < g.S ? lse[g.lse_at(b, h, i)] : 0.f;
      Ds[c] = i < g.S ? dvec[g.lse_at(b, h, i)] : 0.f;
    }
    __syncthreads();

    float s[RPW][CPL], dp[RPW][CPL];
    two_dots<D, RPW, CPL, LD>(s, dp, Ks, Vs, Qs, Gs, warp, lane);
#pragma unroll
    for (int rr = 0; rr < RPW; ++rr) {
      const int j = j0 + warp * RPW + rr;
#pragma unroll
      for (int cc = 0; cc < CPL; ++cc) {
        const int c = lane + 32 * cc, i = i0 + c;
        const bool visible = j <= i && i < g.S;
        const float p = visible ? expf(s[rr][cc] - slope * float(i - j) - Ls[c]) : 0.f;
        Ps[(warp * RPW + rr) * BC + c] = p;
        Ss[(warp * RPW + rr) * BC + c] = p * (dp[rr][cc] - Ds[c]);
      }
    }
    __syncwarp();
    for (int c = 0; c < BC; ++c) {
      float q[DL], gq[DL];
#pragma unroll
      for (int dd = 0; dd < DL; ++dd) {
        q[dd] = Qs[c * LD + lane + 32 * dd];
        gq[dd] = Gs[c * LD + lane + 32 * dd];
      }
#pragma unroll
      for (int rr = 0; rr < RPW; ++rr) {
        const float p = Ps[(warp * RPW + rr) * BC + c], ds = Ss[(warp * RPW + rr) * BC + c];
#pragma unroll
        for (int dd = 0; dd < DL; ++dd) {
          dv[rr][dd] += p * gq[dd];
          dk[rr][dd] += ds * q[dd];  // Q is pre-scaled: this is dS^T Q / sqrt(Dh)
        }
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < RPW; ++rr) {
    const int j = j0 + warp * RPW + rr;
    if (j >= g.S) continue;
    Dt* dstk = dqkv + g.qkv_at(b, j, 1, h);
    Dt* dstv = dqkv + g.qkv_at(b, j, 2, h);
#pragma unroll
    for (int dd = 0; dd < DL; ++dd) {
      const int d = lane + 32 * dd;
      if (d < g.Dh) {
        dstk[d] = from_f<Dt>(dk[rr][dd]);
        dstv[d] = from_f<Dt>(dv[rr][dd]);
      }
    }
  }
}

// ---- dispatch on the padded head dimension -------------------------------------------------------------------

template <int D>
struct TileConfig;  // RPW rows per warp, CPL columns per lane
template <>
struct TileConfig<32> {
  static constexpr int RPW = 8, CPL = 2;
};
template <>
struct TileConfig<64> {
  static constexpr int RPW = 8, CPL = 2;
};
template <>
struct TileConfig<128> {
  static constexpr int RPW = 8, CPL = 2;
};
template <>
struct TileConfig<256> {
  static constexpr int RPW = 4, CPL = 1;
};

// Sets the kernel's dynamic shared-memory limit (above the default 48 KB) once per process.
template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    MT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

template <typename Dt, int D>
void forward_d(Context& ctx, Dt* out, float* lse, const Dt* qkv, const float* slopes, AttnDims g) {
  using C = TileConfig<D>;
  constexpr int BR = kWarps * C::RPW, BC = 32 * C::CPL;
  const size_t smem = sizeof(float) * (size_t(BR) * (D + 1) + 2 * size_t(BC) * (D + 1) + size_t(BR) * BC);
  auto kernel = attention_forward_kernel<Dt, D, C::RPW, C::CPL>;
  allow_smem(kernel, smem);
  const unsigned blocks = unsigned(ceil_div(g.S, BR)) * unsigned(g.B * g.H);
  MT_LAUNCH(ctx, kernel, blocks, kThreads, smem, out, lse, qkv, slopes, g, 1.f / std::sqrt(float(g.Dh)));
}

template <typename Dt, int D>
void backward_d(Context& ctx, Dt* dqkv, const Dt* dout, const Dt* qkv, const float* lse, const float* dvec,
                const float* slopes, AttnDims g) {
  using C = TileConfig<D>;
  constexpr int BR = kWarps * C::RPW, BC = 32 * C::CPL;
  const float scale = 1.f / std::sqrt(float(g.Dh));
  const size_t smem_dq = sizeof(float) * (2 * size_t(BR) * (D + 1) + 2 * size_t(BC) * (D + 1) + size_t(BR) * BC);
  auto dq = attention_dq_kernel<Dt, D, C::RPW, C::CPL>;
  allow_smem(dq, smem_dq);
  const unsigned blocks = unsigned(ceil_div(g.S, BR)) * unsigned(g.B * g.H);
  MT_LAUNCH(ctx, dq, blocks, kThreads, smem_dq, dqkv, dout, qkv, lse, dvec, slopes, g, scale);
  const size_t smem_kv = sizeof(float) * (2 * size_t(BR) * (D + 1) + 2 * size_t(BC) * (D + 1) +
                                          2 * size_t(BR) * BC + 2 * size_t(BC));
  auto dkv = attention_dkv_kernel<Dt, D, C::RPW, C::CPL>;
  allow_smem(dkv, smem_kv);
  MT_LAUNCH(ctx, dkv, blocks, kThreads, smem_kv, dqkv, dout, qkv, lse, dvec, slopes, g, scale);
}

void check_sizes(const AttnDims& d) {
  d.check();
  MT_CHECK(d.Dh <= 256, "the CUDA attention kernels support head_dim up to 256, got ", d.Dh);
  MT_CHECK(size_t(d.B) * d.H * ((d.S + 31) / 32) < (size_t(1) << 31), "attention grid too large: B ", d.B, " H ",
           d.H, " S ", d.S);
}

// Whether bf16 attention under "native" runs the tensor-core kernels (flash_attention.h: the rule, or the
// context's forced choice). Their 16-byte loads need 16-byte aligned buffers (arena blocks are 256).
bool use_tensor_cores(const Context& ctx, const AttnDims& d, std::initializer_list<const void*> buffers) {
  bool aligned = true;
  for (const void* p : buffers) aligned = aligned && reinterpret_cast<uintptr_t>(p) % 16 == 0;
  switch (ctx.native_attention()) {
    case NativeAttention::Simt: return false;
    case NativeAttention::TensorCore:
      MT_CHECK(flash_attention_supports(ctx, d) && aligned, "tensor-core attention forced for head_dim ", d.Dh,
               " (it supports 64 and 128 on sm_80 or newer, 16-byte aligned buffers)");
      return true;
    case NativeAttention::Auto: break;
  }
  return flash_attention_supports(ctx, d) && aligned;
}

}  // namespace

// bf16 goes to cuDNN when the context says so (model.attention_impl "cudnn"), else to the tensor-core
// kernels where they apply (flash_attention.h); fp32 always runs these kernels.
template <typename T>
void CudaOps<T>::attention_forward(T* out, P* lse, const T* qkv, const float* slopes, const AttnDims& d) {
  if constexpr (std::is_same_v<T, mt::bf16>) {
    if (ctx_.attention() == AttentionImpl::Cudnn)
      return ctx_.cudnn().forward(out, lse, qkv, slopes, d.B, d.S, d.H, d.Dh);
    if (use_tensor_cores(ctx_, d, {out, qkv})) return flash_attention_forward(ctx_, out, lse, qkv, slopes, d);
  }
  check_sizes(d);
  if (d.B == 0 || d.S == 0) return;
  auto o = dptr(out);
  auto q = dptr(qkv);
  if (d.Dh <= 32) forward_d<dev_t<T>, 32>(ctx_, o, lse, q, slopes, d);
  else if (d.Dh <= 64) forward_d<dev_t<T>, 64>(ctx_, o, lse, q, slopes, d);
  else if (d.Dh <= 128) forward_d<dev_t<T>, 128>(ctx_, o, lse, q, slopes, d);
  else forward_d<dev_t<T>, 256>(ctx_, o, lse, q, slopes, d);
}

template <typename T>
void CudaOps<T>::attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const P* lse,
                                    const float* slopes, const AttnDims& d) {
  if constexpr (std::is_same_v<T, mt::bf16>) {
    if (ctx_.attention() == AttentionImpl::Cudnn)
      return ctx_.cudnn().backward(dqkv, dout, qkv, out, lse, slopes, d.B, d.S, d.H, d.Dh);
    if (use_tensor_cores(ctx_, d, {dqkv, dout, qkv, out}))
      return flash_attention_backward(ctx_, dqkv, dout, qkv, out, lse, slopes, d);
  }
  check_sizes(d);
  if (d.B == 0 || d.S == 0) return;
  const size_t rows = size_t(d.B) * d.S * d.H;
  float* dvec = static_cast<float*>(ctx_.scratch(sizeof(float) * rows));
  attention_row_dot(ctx_, dvec, dptr(dout), dptr(out), d);
  auto dq = dptr(dqkv);
  auto go = dptr(dout);
  auto q = dptr(qkv);
  if (d.Dh <= 32) backward_d<dev_t<T>, 32>(ctx_, dq, go, q, lse, dvec, slopes, d);
  else if (d.Dh <= 64) backward_d<dev_t<T>, 64>(ctx_, dq, go, q, lse, dvec, slopes, d);
  else if (d.Dh <= 128) backward_d<dev_t<T>, 128>(ctx_, dq, go, q, lse, dvec, slopes, d);
  else backward_d<dev_t<T>, 256>(ctx_, dq, go, q, lse, dvec, slopes, d);
}

MT_CUDA_INSTANTIATE(MT_OPS_ATTENTION)

}  // namespace mt::cuda
