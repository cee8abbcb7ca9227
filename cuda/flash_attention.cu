// Why: see flash_attention.h. The arithmetic of the kernels below:
//   S = q k^T (mma, fp32), s = S / sqrt(Dh) - slope_h (i - j) for j <= i, else masked;
//   forward: online softmax over key tiles (running row max m and sum l), O = sum P V with P in bf16,
//            out = O / l, lse = m + log l;
//   backward: P = exp(s - lse_i) (fp32, then bf16 for the products), dP = dO V^T, dS = P (dP - D_i) with
//            D_i = dO_i . O_i; dV = P^T dO, dK = dS^T q / sqrt(Dh), dQ = dS k / sqrt(Dh).
//
// Work split: a block of 4 warps; each warp owns 16 rows of the block's tile (queries in the forward and
// in dQ, keys in dK / dV) and loops over tiles of the other side, staged in shared memory (bf16 rows
// padded by 16 bytes: the 32-bit fragment loads and ldmatrix rows then fall in distinct banks). Products
// are mma.sync m16n8k16 (bf16 in, fp32 accumulate). Register fragments follow the PTX layouts: with
// g = lane / 4 and t = lane % 4, an A fragment holds rows g and g + 8, columns 2t, 2t + 1 and 2t + 8,
// 2t + 9; a B fragment column g, rows 2t, 2t + 1 and 2t + 8, 2t + 9; an accumulator rows g and g + 8,
// columns 2t, 2t + 1. An accumulator tile of 16 x 16 is therefore already the A fragment of the next
// product once rounded to bf16 (P for P V, P^T for P^T dO, dS for dS k, dS^T for dS^T q). B operands
// stored [n][k] (k for S = q k^T, v for dP = dO v^T, q and dO for the transposed products) are read with
// 32-bit loads; those stored [k][n] (v for P V, dO and q for dV and dK, k for dQ) with ldmatrix.trans.
//
// Tiles: forward 64 queries x 64 keys; dQ 64 queries x 32 keys; dK / dV 64 keys x 32 queries (smaller
// inner tiles keep the fp32 accumulators of a 128-wide head in registers). Key tiles wholly after a
// query tile are never visited (causal skipping); the mask is applied per element on the rest.
// No atomics: dQ sums over key tiles inside one block, dK and dV over query tiles inside another, so
// every result has the same bits on every run.
#include "cuda/flash_attention.h"

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "cuda/attention_rows.cuh"
#include "cuda/common.cuh"
#include "cuda/context.h"

namespace mt::cuda {

namespace {

using bf = __nv_bfloat16;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kPad = 8;  // bf16 elements (16 bytes) of padding per shared-memory row

// ---- fragments -------------------------------------------------------------------------------------------

__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ uint32_t ld32(const bf* p) { return *reinterpret_cast<const uint32_t*>(p); }

// Two floats as bf16 in one register, the first in the low half (the lower column).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// A fragment (16 x 16) of a row-major shared tile: rows r0.., columns k0...
__device__ __forceinline__ void load_a(uint32_t a[4], const bf* s, int ld, int r0, int k0, int g, int t) {
  a[0] = ld32(s + (r0 + g) * ld + k0 + 2 * t);
  a[1] = ld32(s + (r0 + g + 8) * ld + k0 + 2 * t);
  a[2] = ld32(s + (r0 + g) * ld + k0 + 2 * t + 8);
  a[3] = ld32(s + (r0 + g + 8) * ld + k0 + 2 * t + 8);
}

// B fragment (k 16 x n 8) of a shared tile stored [n][k]: n0.. its rows, k0.. its columns.
__device__ __forceinline__ void load_b(uint32_t b[2], const bf* s, int ld, int n0, int k0, int g, int t) {
  b[0] = ld32(s + (n0 + g) * ld + k0 + 2 * t);
  b[1] = ld32(s + (n0 + g) * ld + k0 + 2 * t + 8);
}

// B fragments of two neighbouring n-blocks (k 16 x n 16) of a shared tile stored [k][n]: ldmatrix.x4.trans
// of its four 8 x 8 blocks; lanes 8m .. 8m + 7 give the rows of block m (k half m & 1, n half m >> 1).
__device__ __forceinline__ void load_b_trans(uint32_t b0[2], uint32_t b1[2], const bf* s, int ld, int k0, int n0,
                                             int lane) {
  const int m = lane >> 3, r = lane & 7;
  const bf* row = s + (k0 + r + (m & 1) * 8) * ld + n0 + (m >> 1) * 8;
  const uint32_t addr = uint32_t(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(b0[0]), "=r"(b0[1]), "=r"(b1[0]), "=r"(b1[1])
               : "r"(addr));
}

// The accumulators of n-blocks 2 kc and 2 kc + 1 (a 16 x 16 tile) as the A fragment of the next product.
__device__ __forceinline__ void acc_as_a(uint32_t a[4], const float lo[4], const float hi[4]) {
  a[0] = pack_bf16(lo[0], lo[1]);
  a[1] = pack_bf16(lo[2], lo[3]);
  a[2] = pack_bf16(hi[0], hi[1]);
  a[3] = pack_bf16(hi[2], hi[3]);
}

// acc (16 x 8 ND) += the 16 x BC accumulator tile s, rounded to bf16, times a shared tile (BC x 8 ND)
// stored [k][n].
template <int BC, int ND>
__device__ __forceinline__ void acc_times_tile(float acc[ND][4], const float s[BC / 8][4], const bf* tile, int ld,
                                               int lane) {
#pragma unroll
  for (int kc = 0; kc < BC / 16; ++kc) {
    uint32_t a[4];
    acc_as_a(a, s[2 * kc], s[2 * kc + 1]);
#pragma unroll
    for (int nd = 0; nd < ND; nd += 2) {
      uint32_t b0[2], b1[2];
      load_b_trans(b0, b1, tile, ld, kc * 16, nd * 8, lane);
      mma_bf16(acc[nd], a, b0);
      mma_bf16(acc[nd + 1], a, b1);
    }
  }
}

// Rows row[0] and row[1] (those before S) of a 16 x 8 ND accumulator tile, row r times mul[r], as bf16
// into the rows of `dst` (row stride ld).
template <int ND>
__device__ __forceinline__ void store_rows(bf* dst, size_t ld, const int row[2], int S, const float acc[ND][4],
                                           const float mul[2], int t) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (row[r] >= S) continue;
    bf* d = dst + size_t(row[r]) * ld + 2 * t;
#pragma unroll
    for (int nd = 0; nd < ND; ++nd)
      *reinterpret_cast<uint32_t*>(d + nd * 8) = pack_bf16(acc[nd][2 * r] * mul[r], acc[nd][2 * r + 1] * mul[r]);
  }
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(kFullMask, v, 1));
  return fmaxf(v, __shfl_xor_sync(kFullMask, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(kFullMask, v, 1);
  return v + __shfl_xor_sync(kFullMask, v, 2);
}

// Rows [r0, r0 + rows) of a (S, D) view with row stride `ld` into a shared tile; rows at or past S zero.
template <int D>
__device__ void load_rows(bf* tile, const bf* src, size_t ld, int r0, int rows, int S) {
  constexpr int V = D / 8;  // 16-byte vectors per row
  for (int idx = threadIdx.x; idx < rows * V; idx += blockDim.x) {
    const int r = idx / V, c = (idx % V) * 8;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (r0 + r < S) v = *reinterpret_cast<const uint4*>(src + size_t(r0 + r) * ld + c);
    *reinterpret_cast<uint4*>(tile + r * (D + kPad) + c) = v;
  }
}

// Where one (sequence, head) lives: q, k, v rows in qkv (B, S, 3, H, D), out rows in out (B, S, H, D).
// (The layout is AttnDims's, engine/ops/dims.h.)
struct Head {
  const bf* q;
  const bf* k;
  const bf* v;
  size_t ld_qkv, ld_out, out_at, lse_at;  // out_at: offset of token 0 in out / dout; lse_at in lse (B, H, S)
  __device__ Head(const bf* qkv, int b, int h, const AttnDims& dims) {
    ld_qkv = size_t(dims.ld_qkv());
    ld_out = size_t(dims.ld_out());
    q = qkv + dims.qkv_at(b, 0, 0, h);
    k = qkv + dims.qkv_at(b, 0, 1, h);
    v = qkv + dims.qkv_at(b, 0, 2, h);
    out_at = dims.out_at(b, 0, h);
    lse_at = dims.lse_at(b, h, 0);
  }
};

// Where a block and its thread work: the block's (sequence b, head h) and its tile of `rows` rows (the
// last tile first when `last_first`: the longest work first), the thread's warp, lane and fragment
// coordinates g, t, and the tile rows r[2] of its accumulators.
struct Place {
  int b, h, tile, warp, lane, g, t, r[2];
  __device__ Place(const AttnDims& dims, int rows, bool last_first) {
    const int BH = dims.B * dims.H, n_tiles = (dims.S + rows - 1) / rows, k = int(blockIdx.x / BH),
              bh = int(blockIdx.x % BH);
    tile = last_first ? n_tiles - 1 - k : k;
    b = bh / dims.H;
    h = bh % dims.H;
    warp = threadIdx.x >> 5;
    lane = threadIdx.x & 31;
    g = lane >> 2;
    t = lane & 3;
    r[0] = tile * rows + warp * 16 + g;
    r[1] = r[0] + 8;
  }
};

// The biased, masked score of query i and key j from the raw product (fp32 registers).
__device__ __forceinline__ float score(float qk, int i, int j, float scale, float slope) {
  return j <= i ? qk * scale - slope * float(i - j) : -INFINITY;
}

// ---- forward -----------------------------------------------------------------------------------------------
template <int D>
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(bf* out, float* lse, const bf* qkv,
                                                                  const float* slopes, AttnDims dims, float scale) {
  constexpr int BR = 16 * kWarps, BC = 64, LD = D + kPad, NB = BC / 8, KD = D / 16, ND = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf* Qs = reinterpret_cast<bf*>(smem_raw);  // (BR, LD)
  bf* Ks = Qs + BR * LD;                     // (BC, LD)
  bf* Vs = Ks + BC * LD;                     // (BC, LD)

  const Place pl(dims, BR, true);
  const int warp = pl.warp, lane = pl.lane, g = pl.g, t = pl.t, i0 = pl.tile * BR, *row = pl.r;
  const Head hd(qkv, pl.b, pl.h, dims);
  const int S = dims.S;
  const float slope = slopes[pl.h];

  load_rows<D>(Qs, hd.q, hd.ld_qkv, i0, BR, S);
  __syncthreads();
  uint32_t qf[KD][4];
#pragma unroll
  for (int kk = 0; kk < KD; ++kk) load_a(qf[kk], Qs, LD, warp * 16, kk * 16, g, t);

  float o[ND][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
#pragma unroll
  for (int nd = 0; nd < ND; ++nd) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.f;

  const int j_end = min(i0 + BR, S);  // keys past the tile's last query are all masked: never visited
  for (int j0 = 0; j0 < j_end; j0 += BC) {
    __syncthreads();  // the previous tile's K, V are no longer read
    load_rows<D>(Ks, hd.k, hd.ld_qkv, j0, BC, S);
    load_rows<D>(Vs, hd.v, hd.ld_qkv, j0, BC, S);
    __syncthreads();

    float s[NB][4];
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
      s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KD; ++kk) {
        uint32_t kb[2];
        load_b(kb, Ks, LD, nb * 8, kk * 16, g, t);
        mma_bf16(s[nb], qf[kk], kb);
      }
    }
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float v = score(s[nb][e], row[e >> 1], j0 + nb * 8 + 2 * t + (e & 1), scale, slope);
        s[nb][e] = v;
        mx[e >> 1] = fmaxf(mx[e >> 1], v);
      }
    float corr[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float m_new = fmaxf(m[r], quad_max(mx[r]));
      // Key 0 is visible to every row and lies in the first tile: m is finite from then on.
      corr[r] = m[r] == -INFINITY ? 0.f : expf(m[r] - m_new);
      m[r] = m_new;
      l[r] *= corr[r];
    }
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = s[nb][e] == -INFINITY ? 0.f : expf(s[nb][e] - m[e >> 1]);
        s[nb][e] = p;
        l[e >> 1] += p;  // this thread's share of the row sum, completed over the quad at the end
      }
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) {
      o[nd][0] *= corr[0];
      o[nd][1] *= corr[0];
      o[nd][2] *= corr[1];
      o[nd][3] *= corr[1];
    }
    // O += P V, P rounded to bf16.
    acc_times_tile<BC, ND>(o, s, Vs, LD, lane);
  }

  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float sum = quad_sum(l[r]);
    inv[r] = 1.f / sum;
    if (t == 0 && row[r] < S) lse[hd.lse_at + row[r]] = m[r] + logf(sum);
  }
  store_rows<ND>(out + hd.out_at, hd.ld_out, row, S, o, inv, t);
}

// ---- backward: dQ for 64 queries, over key tiles of 32 -----------------------------------------------------
template <int D>
__global__ void __launch_bounds__(kThreads) flash_dq_kernel(bf* dqkv, const bf* dout, const bf* qkv, const float* lse,
                                                             const float* dvec, const float* slopes, AttnDims dims,
                                                             float scale) {
  constexpr int BR = 16 * kWarps, BC = 32, LD = D + kPad, NB = BC / 8, KD = D / 16, ND = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf* Qs = reinterpret_cast<bf*>(smem_raw);  // (BR, LD)
  bf* Gs = Qs + BR * LD;                     // (BR, LD) dout
  bf* Ks = Gs + BR * LD;                     // (BC, LD)
  bf* Vs = Ks + BC * LD;                     // (BC, LD)

  const Place pl(dims, BR, true);
  const int warp = pl.warp, lane = pl.lane, g = pl.g, t = pl.t, i0 = pl.tile * BR, *row = pl.r;
  const Head hd(qkv, pl.b, pl.h, dims);
  const int S = dims.S;
  const float slope = slopes[pl.h];

  load_rows<D>(Qs, hd.q, hd.ld_qkv, i0, BR, S);
  load_rows<D>(Gs, dout + hd.out_at, hd.ld_out, i0, BR, S);
  __syncthreads();
  uint32_t qf[KD][4], gf[KD][4];
#pragma unroll
  for (int kk = 0; kk < KD; ++kk) {
    load_a(qf[kk], Qs, LD, warp * 16, kk * 16, g, t);
    load_a(gf[kk], Gs, LD, warp * 16, kk * 16, g, t);
  }
  float row_lse[2], row_d[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_lse[r] = row[r] < S ? lse[hd.lse_at + row[r]] : 0.f;
    row_d[r] = row[r] < S ? dvec[hd.lse_at + row[r]] : 0.f;
  }
  float dq[ND][4];
#pragma unroll
  for (int nd = 0; nd < ND; ++nd) dq[nd][0] = dq[nd][1] = dq[nd][2] = dq[nd][3] = 0.f;

  const int j_end = min(i0 + BR, S);
  for (int j0 = 0; j0 < j_end; j0 += BC) {
    __syncthreads();
    load_rows<D>(Ks, hd.k, hd.ld_qkv, j0, BC, S);
    load_rows<D>(Vs, hd.v, hd.ld_qkv, j0, BC, S);
    __syncthreads();

    float s[NB][4], dp[NB][4];
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nb][e] = dp[nb][e] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KD; ++kk) {
        uint32_t kb[2], vb[2];
        load_b(kb, Ks, LD, nb * 8, kk * 16, g, t);
        mma_bf16(s[nb], qf[kk], kb);
        load_b(vb, Vs, LD, nb * 8, kk * 16, g, t);
        mma_bf16(dp[nb], gf[kk], vb);
      }
    }
    // dS = P (dP - D), kept in s.
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1, i = row[r];
        const float v = score(s[nb][e], i, j0 + nb * 8 + 2 * t + (e & 1), scale, slope);
        const float p = (v == -INFINITY || i >= S) ? 0.f : expf(v - row_lse[r]);
        s[nb][e] = p * (dp[nb][e] - row_d[r]);
      }
    // dQ += dS k (k read [key][d]: ldmatrix.trans).
    acc_times_tile<BC, ND>(dq, s, Ks, LD, lane);
  }

  const float mul[2] = {scale, scale};
  store_rows<ND>(dqkv + (hd.q - qkv), hd.ld_qkv, row, S, dq, mul, t);
}

// ---- backward: dK, dV for 64 keys, over query tiles of 32 --------------------------------------------------
template <int D>
__global__ void __launch_bounds__(kThreads) flash_dkv_kernel(bf* dqkv, const bf* dout, const bf* qkv, const float* lse,
                                                              const float* dvec, const float* slopes, AttnDims dims,
                                                              float scale) {
  constexpr int BR = 16 * kWarps, BC = 32, LD = D + kPad, NB = BC / 8, KD = D / 16, ND = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf* Ks = reinterpret_cast<bf*>(smem_raw);          // (BR, LD) this block's keys
  bf* Vs = Ks + BR * LD;                             // (BR, LD)
  bf* Qs = Vs + BR * LD;                             // (BC, LD) the current query tile
  bf* Gs = Qs + BC * LD;                             // (BC, LD) its dout
  float* Ls = reinterpret_cast<float*>(Gs + BC * LD);  // (BC) its lse
  float* Ds = Ls + BC;                               // (BC) its D

  // Key tile k sees the queries from its first key on: the first tiles work most, and go first.
  const Place pl(dims, BR, false);
  const int warp = pl.warp, lane = pl.lane, g = pl.g, t = pl.t, j0 = pl.tile * BR, *key = pl.r;
  const Head hd(qkv, pl.b, pl.h, dims);
  const int S = dims.S;
  const float slope = slopes[pl.h];

  load_rows<D>(Ks, hd.k, hd.ld_qkv, j0, BR, S);
  load_rows<D>(Vs, hd.v, hd.ld_qkv, j0, BR, S);
  float dk[ND][4], dv[ND][4];
#pragma unroll
  for (int nd = 0; nd < ND; ++nd)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[nd][e] = dv[nd][e] = 0.f;

  for (int i0 = j0; i0 < S; i0 += BC) {  // queries before j0 see none of these keys
    __syncthreads();
    load_rows<D>(Qs, hd.q, hd.ld_qkv, i0, BC, S);
    load_rows<D>(Gs, dout + hd.out_at, hd.ld_out, i0, BC, S);
    for (int c = threadIdx.x; c < BC; c += blockDim.x) {
      const int i = i0 + c;
      Ls[c] = i < S ? lse[hd.lse_at + i] : 0.f;
      Ds[c] = i < S ? dvec[hd.lse_at + i] : 0.f;
    }
    __syncthreads();

    // S^T = k q^T and dP^T = v dO^T (keys x queries).
    float s[NB][4], dp[NB][4];
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nb][e] = dp[nb][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
      uint32_t ka[4], va[4];
      load_a(ka, Ks, LD, warp * 16, kk * 16, g, t);
      load_a(va, Vs, LD, warp * 16, kk * 16, g, t);
#pragma unroll
      for (int nb = 0; nb < NB; ++nb) {
        uint32_t qb[2], gb[2];
        load_b(qb, Qs, LD, nb * 8, kk * 16, g, t);
        mma_bf16(s[nb], ka, qb);
        load_b(gb, Gs, LD, nb * 8, kk * 16, g, t);
        mma_bf16(dp[nb], va, gb);
      }
    }
    // P^T into s, dS^T into dp.
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = nb * 8 + 2 * t + (e & 1), i = i0 + c, j = key[e >> 1];
        const float v = score(s[nb][e], i, j, scale, slope);
        const float p = (v == -INFINITY || i >= S) ? 0.f : expf(v - Ls[c]);
        s[nb][e] = p;
        dp[nb][e] = p * (dp[nb][e] - Ds[c]);
      }
    // dV += P^T dO, dK += dS^T q (dO and q read [query][d]: ldmatrix.trans).
    acc_times_tile<BC, ND>(dv, s, Gs, LD, lane);
    acc_times_tile<BC, ND>(dk, dp, Qs, LD, lane);
  }

  const float k_mul[2] = {scale, scale}, v_mul[2] = {1.f, 1.f};
  store_rows<ND>(dqkv + (hd.k - qkv), hd.ld_qkv, key, S, dk, k_mul, t);
  store_rows<ND>(dqkv + (hd.v - qkv), hd.ld_qkv, key, S, dv, v_mul, t);
}

// ---- launch -------------------------------------------------------------------------------------------------

// Shared-memory bytes of each kernel: four tiles of bf16 rows (and dK / dV's two float rows).
template <int D>
constexpr size_t smem_forward() {
  return sizeof(bf) * size_t(16 * kWarps + 64 + 64) * (D + kPad);
}
template <int D>
constexpr size_t smem_backward() {
  return sizeof(bf) * size_t(2 * 16 * kWarps + 2 * 32) * (D + kPad) + 2 * 32 * sizeof(float);
}

// Raises a kernel's dynamic shared-memory limit (above the default 48 KB) once per process.
template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    MT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

unsigned tiles(const AttnDims& d, int rows) { return ceil_div(size_t(d.S), size_t(rows)) * unsigned(d.B * d.H); }

template <int D>
void forward_d(Context& ctx, bf* out, float* lse, const bf* qkv, const float* slopes, const AttnDims& d) {
  const size_t smem = smem_forward<D>();
  static const bool raised = (allow_smem(flash_forward_kernel<D>, smem), true);
  (void)raised;
  MT_LAUNCH(ctx, flash_forward_kernel<D>, tiles(d, 16 * kWarps), kThreads, smem, out, lse, qkv, slopes, d,
            1.f / std::sqrt(float(D)));
}

template <int D>
void backward_d(Context& ctx, bf* dqkv, const bf* dout, const bf* qkv, const float* lse, const float* dvec,
                const float* slopes, const AttnDims& d) {
  const size_t smem = smem_backward<D>();
  static const bool raised = (allow_smem(flash_dq_kernel<D>, smem), allow_smem(flash_dkv_kernel<D>, smem), true);
  (void)raised;
  const float scale = 1.f / std::sqrt(float(D));
  MT_LAUNCH(ctx, flash_dq_kernel<D>, tiles(d, 16 * kWarps), kThreads, smem, dqkv, dout, qkv, lse, dvec, slopes,
            d, scale);
  MT_LAUNCH(ctx, flash_dkv_kernel<D>, tiles(d, 16 * kWarps), kThreads, smem, dqkv, dout, qkv, lse, dvec, slopes,
            d, scale);
}

}  // namespace

bool flash_attention_supports(const Context& ctx, const AttnDims& d) {
  return (d.Dh == 64 || d.Dh == 128) && ctx.device_info().major >= 8 && d.B >= 0 && d.H > 0 &&
         size_t(d.B) * d.H * ((size_t(d.S) + 63) / 64) < (size_t(1) << 31);
}

void flash_attention_forward(Context& ctx, bf16* out, float* lse, const bf16* qkv, const float* slopes,
                             const AttnDims& d) {
  MT_CHECK(flash_attention_supports(ctx, d), "the tensor-core attention supports head_dim 64 and 128 on sm_80 or "
                                             "newer, got head_dim ", d.Dh);
  if (d.B == 0 || d.S == 0) return;
  if (d.Dh == 64) forward_d<64>(ctx, dptr(out), lse, dptr(qkv), slopes, d);
  else forward_d<128>(ctx, dptr(out), lse, dptr(qkv), slopes, d);
}

void flash_attention_backward(Context& ctx, bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out,
                              const float* lse, const float* slopes, const AttnDims& d) {
  MT_CHECK(flash_attention_supports(ctx, d), "the tensor-core attention supports head_dim 64 and 128 on sm_80 or "
                                             "newer, got head_dim ", d.Dh);
  if (d.B == 0 || d.S == 0) return;
  float* dvec = static_cast<float*>(ctx.scratch(sizeof(float) * size_t(d.B) * d.S * d.H));
  attention_row_dot(ctx, dvec, dptr(dout), dptr(out), d);
  if (d.Dh == 64) backward_d<64>(ctx, dptr(dqkv), dptr(dout), dptr(qkv), lse, dvec, slopes, d);
  else backward_d<128>(ctx, dptr(dqkv), dptr(dout), dptr(qkv), lse, dvec, slopes, d);
}

}  // namespace mt::cuda
