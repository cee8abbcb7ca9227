// Why: what every kernel file shares: the device type behind mt::bf16 (__nv_bfloat16, the same 16 bits),
// loads that widen to float and stores that round from float (all arithmetic is in fp32 or wider,
// bf16 is storage only), warp and block reductions, and launch sizing. Kernels are templated on the
// device element type D (float or __nv_bfloat16); the host wrappers map T (float or mt::bf16) to D.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "cuda/check.h"
#include "cuda/context.h"
#include "engine/core/dtype.h"

namespace mt::cuda {

// The device element type of a host type: float -> float, mt::bf16 -> __nv_bfloat16.
template <typename T>
struct device_type {
  using type = T;
};
template <>
struct device_type<mt::bf16> {
  using type = __nv_bfloat16;
};
template <typename T>
using dev_t = typename device_type<T>::type;
static_assert(sizeof(__nv_bfloat16) == sizeof(mt::bf16), "bf16 layouts differ");

template <typename T>
inline dev_t<T>* dptr(T* p) {
  return reinterpret_cast<dev_t<T>*>(p);
}
template <typename T>
inline const dev_t<T>* dptr(const T* p) {
  return reinterpret_cast<const dev_t<T>*>(p);
}

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(double x) { return float(x); }

template <typename D>
__device__ __forceinline__ D from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result. The
// order of the additions depends only on blockDim, so the result is the same on every run. `shared`
// holds 32 values; the function begins and ends with a barrier so that it can be called in a loop.
template <typename V>
__device__ __forceinline__ V block_sum(V v, V* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  V total = lane < warps ? shared[lane] : V(0);
  return warp_sum(total);
}

// Blocks for a grid-stride loop over n elements (at most `cap`, at least 1).
inline unsigned grid_for(size_t n, int threads, unsigned cap = 65535u * 8) {
  size_t blocks = (n + size_t(threads) - 1) / size_t(threads);
  if (blocks < 1) blocks = 1;
  return unsigned(blocks < cap ? blocks : cap);
}

inline unsigned ceil_div(size_t a, size_t b) { return unsigned((a + b - 1) / b); }

// Every kernel launch of the backend: queued on the context's stream, its configuration checked, and
// counted (DeviceCounters::launches). A kernel template with several arguments goes in parentheses.
#define MT_LAUNCH(ctx, kernel, grid, block, smem, ...)                               \
  do {                                                                               \
    (kernel)<<<(grid), (block), (smem), (ctx).stream()>>>(__VA_ARGS__);              \
    MT_CUDA_CHECK_LAUNCH();                                                          \
    (ctx).count_launches(1);                                                         \
  } while (0)

}  // namespace mt::cuda
