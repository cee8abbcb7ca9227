// Why: the grouped linear layers of the routed experts (ops.h grouped_linear_*) as our own grouped GEMM
// kernels: ONE launch per projection for all local experts, the experts' row offsets read on the device,
// so the host never needs the rows per expert (no wait for the device). CUDA 13 offers no grouped GEMM
// that takes its shapes from device memory: cublasGemmGroupedBatchedEx takes host arrays of m, n, k
// (the counts would have to come to the host first: a sync per layer), cuBLASLt's batched matmuls
// (strided or pointer-array) need one shape for every batch entry, and CUTLASS is not available here.
//
// Tiles: an output tile is BM x BN, the reduction runs in steps of BK through shared memory, and the
// math is bf16 tensor cores (WMMA 16x16x16, fp32 accumulation; 4 warps of 32x32) for bf16 and plain fp32
// FMAs (256 threads of 4x4) for fp32. Forward and input gradient: the row tiles are numbered group after
// group (ceil(rows_g / BM) each); the grid holds the most there can be (ceil(rows / BM) + G, known on the
// host from the buffer size) and each block finds its group by walking the offsets; the blocks past
// the last tile return at once. Weight gradient: one block per (group, BM x BN tile of W_g), reducing
// over the group's rows in BK steps: a fixed order, no atomics, so every run gives the same bits. A
// weight stacked from two tensors (w1 | w3) is addressed row by row: W_g's row o comes from the first
// tensor for o < split, else from the second, so w1 and w3 run as one (2F, Dm) weight per expert
// without changing the parameter layout; its input gradient sums both halves in one fp32 accumulation.
// Global loads are 16-byte vectors when the row lengths and pointers allow it (checked on the host),
// else elementwise.
#include <mma.h>

#include <cstdint>
#include <initializer_list>

#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"

namespace mt::cuda {

namespace {

constexpr int BM = 64, BN = 64, BK = 32;

// The math of one BM x BN output tile over shared-memory operands a (BM x BK) and b (BN x BK), both
// stored with the reduction index contiguous: C[m][n] += sum_k a[m][k] b[n][k].
template <typename D>
struct Tile;

template <>
struct Tile<__nv_bfloat16> {
  using D = __nv_bfloat16;
  static constexpr int kThreads = 128;  // 4 warps, each 32 x 32 of the tile
  static constexpr int kLd = BK + 8;    // 80-byte rows: 16-byte vector stores, WMMA's ldm a multiple of 8
  struct Smem {
    D a[BM][kLd];
    D b[BN][kLd];
    float c[BM][BN + 4];
  };
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> acc[2][2];

  __device__ void zero() {
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) nvcuda::wmma::fill_fragment(acc[i][j], 0.f);
  }
  __device__ void step(Smem& s) {
    using namespace nvcuda;
    const int warp = threadIdx.x >> 5, wm = warp >> 1, wn = warp & 1;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, D, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, D, wmma::col_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], &s.a[wm * 32 + i * 16][kk], kLd);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], &s.b[wn * 32 + j * 16][kk], kLd);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
  }
  // out(m, n, value) for every element of the tile (the caller bounds-checks).
  template <typename Out>
  __device__ void finish(Smem& s, Out out) {
    using namespace nvcuda;
    const int warp = threadIdx.x >> 5, wm = warp >> 1, wn = warp & 1;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j)
        wmma::store_matrix_sync(&s.c[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], BN + 4, wmma::mem_row_major);
    __syncthreads();
    for (int idx = threadIdx.x; idx < BM * BN; idx += kThreads) out(idx / BN, idx % BN, s.c[idx / BN][idx % BN]);
  }
};

template <>
struct Tile<float> {
  static constexpr int kThreads = 256;  // 16 x 16 threads, each 4 x 4 of the tile
  static constexpr int kLd = BK + 4;    // 144-byte rows: 16-byte vector stores
  struct Smem {
    float a[BM][kLd];
    float b[BN][kLd];
  };
  float acc[4][4];

  __device__ void zero() {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
  }
  __device__ void step(Smem& s) {
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
#pragma unroll 4
    for (int k = 0; k < BK; ++k) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = s.a[ty * 4 + i][k];
#pragma unroll
      for (int j = 0; j < 4; ++j) bv[j] = s.b[tx * 4 + j][k];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
  }
  template <typename Out>
  __device__ void finish(Smem&, Out out) {
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) out(ty * 4 + i, tx * 4 + j, acc[i][j]);
  }
};

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Row o of group g's weight (Out, In): the first `split` rows from top, the others from bottom.
template <typename W>
__device__ __forceinline__ W* weight_row(W* top, W* bottom, int g, int o, int In, int Out, int split) {
  return o < split ? top + (size_t(g) * split + o) * In : bottom + (size_t(g) * (Out - split) + (o - split)) * In;
}

// The group, first row and row count of row tile t (tiles numbered group after group, ceil(n_g / BM)
// per group), clipped to the `rows` the buffers hold; false past the last tile.
__device__ __forceinline__ bool find_tile(const int64_t* offsets, int G, int rows, int t, int* g_out, int64_t* row0,
                                          int* nrows) {
  int64_t first = 0;  // the first tile of group g
  for (int g = 0; g < G; ++g) {
    const int64_t begin = offsets[g], end = min64(offsets[g + 1], rows);
    const int64_t tiles = end > begin ? (end - begin + BM - 1) / BM : 0;
    if (t < first + tiles) {
      *g_out = g;
      *row0 = begin + (t - first) * BM;
      *nrows = int(min64(BM, end - *row0));
      return true;
    }
    first += tiles;
  }
  return false;
}

template <typename D>
__device__ __forceinline__ D zero_of() {
  return from_f<D>(0.f);
}

// S[r][k] = element k0 + k of row r (row_ptr(r): rows with the reduction index contiguous, K long), zero
// outside rows_valid x K. vec: 16-byte loads (K a multiple of the vector and the rows aligned).
template <int ROWS, int LD, typename D, typename RowPtr>
__device__ __forceinline__ void load_rows(D (*S)[LD], RowPtr row_ptr, int rows_valid, int k0, int K, bool vec) {
  if (vec) {
    constexpr int V = 16 / sizeof(D), per_row = BK / V;
    for (int idx = threadIdx.x; idx < ROWS * per_row; idx += blockDim.x) {
      const int r = idx / per_row, k = (idx % per_row) * V;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (r < rows_valid && k0 + k < K) v = *reinterpret_cast<const uint4*>(row_ptr(r) + k0 + k);
      *reinterpret_cast<uint4*>(&S[r][k]) = v;
    }
  } else {
    for (int idx = threadIdx.x; idx < ROWS * BK; idx += blockDim.x) {
      const int r = idx / BK, k = idx % BK;
      S[r][k] = (r < rows_valid && k0 + k < K) ? row_ptr(r)[k0 + k] : zero_of<D>();
    }
  }
}

// S[c][k] = element c0 + c of row k (row_ptr(k): rows indexed by the reduction, COLS-wide slices of C
// contiguous elements), zero outside k_valid x C: a transposing load.
template <int COLS, int LD, typename D, typename RowPtr>
__device__ __forceinline__ void load_cols(D (*S)[LD], RowPtr row_ptr, int k_valid, int c0, int C, bool vec) {
  if (vec) {
    constexpr int V = 16 / sizeof(D), per_k = COLS / V;
    for (int idx = threadIdx.x; idx < BK * per_k; idx += blockDim.x) {
      const int k = idx / per_k, c = (idx % per_k) * V;
      union {
        uint4 v;
        D d[V];
      } u;
      u.v = make_uint4(0, 0, 0, 0);
      if (k < k_valid && c0 + c < C) u.v = *reinterpret_cast<const uint4*>(row_ptr(k) + c0 + c);
#pragma unroll
      for (int j = 0; j < V; ++j) S[c + j][k] = u.d[j];
    }
  } else {
    for (int idx = threadIdx.x; idx < BK * COLS; idx += blockDim.x) {
      const int k = idx / COLS, c = idx % COLS;
      S[c][k] = (k < k_valid && c0 + c < C) ? row_ptr(k)[c0 + c] : zero_of<D>();
    }
  }
}

// y (rows, Out) = x (rows, In) W_g^T: grid (row tiles, Out / BN).
template <typename D>
__global__ void __launch_bounds__(Tile<D>::kThreads)
    grouped_forward_kernel(D* y, const D* x, const D* top, const D* bottom, const int64_t* offsets, int G, int rows,
                           int In, int Out, int split, bool vec_x, bool vec_w) {
  int g, nrows;
  int64_t row0;
  if (!find_tile(offsets, G, rows, int(blockIdx.x), &g, &row0, &nrows)) return;
  const int n0 = blockIdx.y * BN;
  __shared__ __align__(128) typename Tile<D>::Smem s;
  Tile<D> t;
  t.zero();
  const D* xs = x + size_t(row0) * In;
  for (int k0 = 0; k0 < In; k0 += BK) {
    load_rows<BM>(s.a, [&](int r) { return xs + size_t(r) * In; }, nrows, k0, In, vec_x);
    load_rows<BN>(s.b, [&](int n) { return weight_row(top, bottom, g, n0 + n, In, Out, split); }, Out - n0, k0, In,
                  vec_w);
    __syncthreads();
    t.step(s);
    __syncthreads();
  }
  t.finish(s, [&](int m, int n, float v) {
    if (m < nrows && n0 + n < Out) y[size_t(row0 + m) * Out + n0 + n] = from_f<D>(v);
  });
}

// dx (rows, In) = dy (rows, Out) W_g: grid (row tiles, In / BN); the reduction runs over all Out rows of
// the stacked weight.
template <typename D>
__global__ void __launch_bounds__(Tile<D>::kThreads)
    grouped_dgrad_kernel(D* dx, const D* dy, const D* top, const D* bottom, const int64_t* offsets, int G, int rows,
                         int In, int Out, int split, bool vec_dy, bool vec_w) {
  int g, nrows;
  int64_t row0;
  if (!find_tile(offsets, G, rows, int(blockIdx.x), &g, &row0, &nrows)) return;
  const int i0 = blockIdx.y * BN;
  __shared__ __align__(128) typename Tile<D>::Smem s;
  Tile<D> t;
  t.zero();
  const D* dys = dy + size_t(row0) * Out;
  for (int k0 = 0; k0 < Out; k0 += BK) {
    load_rows<BM>(s.a, [&](int r) { return dys + size_t(r) * Out; }, nrows, k0, Out, vec_dy);
    load_cols<BN>(s.b, [&](int k) { return weight_row(top, bottom, g, k0 + k, In, Out, split); }, Out - k0, i0, In,
                  vec_w);
    __syncthreads();
    t.step(s);
    __syncthreads();
  }
  t.finish(s, [&](int m, int n, float v) {
    if (m < nrows && i0 + n < In) dx[size_t(row0 + m) * In + i0 + n] = from_f<D>(v);
  });
}

// dW_g (Out, In) += dy_g^T x_g over the group's rows: grid (In / BN, Out / BM, G).
template <typename D>
__global__ void __launch_bounds__(Tile<D>::kThreads)
    grouped_wgrad_kernel(float* dtop, float* dbottom, const D* dy, const D* x, const int64_t* offsets, int rows,
                         int In, int Out, int split, bool vec_dy, bool vec_x) {
  const int g = blockIdx.z;
  const int64_t begin = offsets[g], end = min64(offsets[g + 1], rows);
  if (end <= begin) return;
  const int i0 = blockIdx.x * BN, o0 = blockIdx.y * BM;
  __shared__ __align__(128) typename Tile<D>::Smem s;
  Tile<D> t;
  t.zero();
  for (int64_t r0 = begin; r0 < end; r0 += BK) {
    const int kv = int(min64(BK, end - r0));
    load_cols<BM>(s.a, [&](int k) { return dy + size_t(r0 + k) * Out; }, kv, o0, Out, vec_dy);
    load_cols<BN>(s.b, [&](int k) { return x + size_t(r0 + k) * In; }, kv, i0, In, vec_x);
    __syncthreads();
    t.step(s);
    __syncthreads();
  }
  t.finish(s, [&](int m, int n, float v) {
    if (o0 + m < Out && i0 + n < In) weight_row(dtop, dbottom, g, o0 + m, In, Out, split)[i0 + n] += v;
  });
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// 16-byte loads of rows `len` long from these bases.
template <typename D>
bool vector_rows(int len, std::initializer_list<const void*> bases) {
  if (len % int(16 / sizeof(D)) != 0) return false;
  for (const void* p : bases)
    if (p && !aligned16(p)) return false;
  return true;
}

void check_grouped(const GroupedLinearDims& d, bool stacked) {
  MT_CHECK(d.G >= 0 && d.In > 0 && d.Out > 0 && d.rows >= 0, "grouped linear: G ", d.G, " In ", d.In, " Out ",
           d.Out, " rows ", d.rows);
  MT_CHECK(stacked ? d.split > 0 && d.split < d.Out : d.split == d.Out, "grouped linear: split ", d.split,
           " of Out ", d.Out, stacked ? " with two stacked tensors" : " with one tensor");
  MT_CHECK(d.G <= 65535, "grouped linear: ", d.G, " groups (at most 65535)");
}

// The row tiles the forward and input-gradient grids hold: the most that `rows` rows in G groups need.
unsigned row_tiles(const GroupedLinearDims& d) { return ceil_div(size_t(d.rows), BM) + unsigned(d.G); }

}  // namespace

template <typename T>
void CudaOps<T>::grouped_linear_forward(T* y, const T* x, const StackedWeight<const T>& w, const int64_t* offsets,
                                        const GroupedLinearDims& d) {
  using D = dev_t<T>;
  check_grouped(d, w.bottom != nullptr);
  if (d.G == 0 || d.rows == 0) return;
  const dim3 grid(row_tiles(d), ceil_div(size_t(d.Out), BN));
  MT_LAUNCH(ctx_, grouped_forward_kernel<D>, grid, Tile<D>::kThreads, 0, dptr(y), dptr(x), dptr(w.top),
            dptr(w.bottom), offsets, d.G, d.rows, d.In, d.Out, d.split, vector_rows<D>(d.In, {x}),
            vector_rows<D>(d.In, {w.top, w.bottom}));
}

template <typename T>
void CudaOps<T>::grouped_linear_backward(T* dx, const StackedWeight<P>& dw, const T* dy, const T* x,
                                         const StackedWeight<const T>& w, const int64_t* offsets,
                                         const GroupedLinearDims& d) {
  using D = dev_t<T>;
  const bool stacked = w.bottom != nullptr;
  check_grouped(d, stacked);
  MT_CHECK((dw.bottom != nullptr) == stacked, "grouped linear: the weight and its gradient must both be stacked");
  if (d.G == 0 || d.rows == 0) return;
  const dim3 dgrid(row_tiles(d), ceil_div(size_t(d.In), BN));
  MT_LAUNCH(ctx_, grouped_dgrad_kernel<D>, dgrid, Tile<D>::kThreads, 0, dptr(dx), dptr(dy), dptr(w.top),
            dptr(w.bottom), offsets, d.G, d.rows, d.In, d.Out, d.split, vector_rows<D>(d.Out, {dy}),
            vector_rows<D>(d.In, {w.top, w.bottom}));
  const dim3 wgrid(ceil_div(size_t(d.In), BN), ceil_div(size_t(d.Out), BM), unsigned(d.G));
  MT_LAUNCH(ctx_, grouped_wgrad_kernel<D>, wgrid, Tile<D>::kThreads, 0, dw.top, dw.bottom, dptr(dy), dptr(x), offsets,
            d.rows, d.In, d.Out, d.split, vector_rows<D>(d.Out, {dy}), vector_rows<D>(d.In, {x}));
}

MT_CUDA_INSTANTIATE(MT_OPS_EXPERTS)

}  // namespace mt::cuda
