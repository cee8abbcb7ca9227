// Why: the state that every CUDA op of a backend shares: the device and its stream, the cuBLASLt handle
// with its workspace and a bounded cache of GEMM plans (the heuristic query costs more than a small GEMM,
// so it runs once per plan), and scratch memory (device and pinned host) for the ops' temporaries,
// reserved once at construction for what a step's ops ask (the largest is rmsnorm's 512 x Dm partial
// sums: 16 MiB at Dm = 8192), so that the step loop does not allocate. A plan is keyed by m and k rounded
// up to a power of two (the rest exact): dropless MoE gives every expert a new row count every step,
// which as exact keys would fill the cache with one-use plans; the plan's layouts take the exact sizes
// at each call.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <library_types.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <utility>

#include "cuda/device.h"
#include "cuda/flash_attention.h"
#include "engine/core/check.h"
#include "engine/ops/ops.h"

namespace mt::cuda {

class CudnnAttention;

class Context {
 public:
  explicit Context(CudaDevice& device);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  CudaDevice& device() { return device_; }
  cudaStream_t stream() const { return device_.stream(); }
  int sm_count() const { return device_.info().sm_count; }
  const DeviceInfo& device_info() const { return device_.info(); }

  // The device's structural counters (engine/core/device.h DeviceCounters): kernel launches go through
  // MT_LAUNCH (common.cuh), library calls that queue device work count themselves here, and every wait
  // of the host for the stream goes through wait() (or the device's copy / synchronize, which count).
  void count_launches(int n) { device_.counters().launches += n; }
  // Waits for the stream: one host sync.
  void wait();

  // Device scratch of at least `bytes` (256-byte aligned), valid until the next scratch() call. Work on
  // the stream is ordered, so an op may reuse it freely within its own launches. It is stream-ordered
  // memory throughout (cudaMallocAsync at construction; a demand beyond the reservation frees and
  // allocates again with cudaFreeAsync / cudaMallocAsync: no device synchronisation).
  void* scratch(size_t bytes);
  // Pinned host memory of at least `bytes`, for small results read back by the host.
  void* host_scratch(size_t bytes);

  // Which attention kernels the bf16 ops run (model.attention_impl); fp32 always runs the native ones.
  AttentionImpl attention() const { return attention_; }
  void set_attention(AttentionImpl impl) { attention_ = impl; }
  // Under "native": the tensor-core kernels by the rule of flash_attention.h (Auto), or one forced.
  NativeAttention native_attention() const { return native_attention_; }
  void set_native_attention(NativeAttention which) { native_attention_ = which; }
  // The cuDNN attention of this context (handle and plans), made on first use.
  CudnnAttention& cudnn();

  // Row-major C[m, n] = alpha op(A) op(B) + beta C (GemmShape of engine/ops/dims.h) with fp32 accumulation.
  // ab_type: CUDA_R_32F or CUDA_R_16BF; c_type: CUDA_R_32F or CUDA_R_16BF.
  void gemm(void* c, cudaDataType_t c_type, const void* a, const void* b, cudaDataType_t ab_type,
            const GemmShape& s, float alpha, float beta);

 private:
  struct PlanKey {
    int ab_type, c_type, ta, tb, m_bucket, n, k_bucket, lda, ldb, ldc, align_a, align_b, align_c;
    bool operator==(const PlanKey& o) const;
  };
  struct PlanKeyHash {
    size_t operator()(const PlanKey& k) const;
  };
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool have_algo = false;  // false: cuBLASLt found none; the plain cuBLAS GemmEx path is used
    bool trans_a = false, trans_b = false;  // of the row-major GemmShape
  };
  // The plan's layouts for row-major sizes m, n, k.
  static void set_sizes(Plan& p, int m, int n, int k);
  // The cached plan of `key` (made on a miss, its algorithm chosen for the bucket sizes), now the most
  // recently used; beyond kMaxPlans the least recently used plan is destroyed.
  Plan& plan(const PlanKey& key);
  static void destroy(Plan& p);
  // C = beta C for k = 0 (no product).
  void scale_matrix(void* c, cudaDataType_t c_type, int m, int n, int ldc, float beta);

  CudaDevice& device_;
  cublasLtHandle_t lt_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  using PlanList = std::list<std::pair<PlanKey, Plan>>;  // most recently used first
  PlanList plans_;
  std::unordered_map<PlanKey, PlanList::iterator, PlanKeyHash> plan_index_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  void* host_scratch_ = nullptr;
  size_t host_scratch_bytes_ = 0;
  AttentionImpl attention_ = AttentionImpl::Native;
  NativeAttention native_attention_ = NativeAttention::Auto;
  std::unique_ptr<CudnnAttention> cudnn_;
};

// Carves several typed arrays out of one scratch() block.
class ScratchCarver {
 public:
  explicit ScratchCarver(size_t align = 256) : align_(align) {}
  template <typename X>
  void add(X** ptr, size_t count) {
    MT_CHECK(n_ < kMax, "ScratchCarver holds at most ", kMax, " arrays");
    entries_[n_++] = {reinterpret_cast<void**>(ptr), (count * sizeof(X) + align_ - 1) / align_ * align_};
  }
  void allocate(Context& ctx) {
    size_t total = 0;
    for (int i = 0; i < n_; ++i) total += entries_[i].bytes;
    char* base = static_cast<char*>(ctx.scratch(total));
    for (int i = 0; i < n_; ++i) {
      *entries_[i].ptr = base;
      base += entries_[i].bytes;
    }
  }

 private:
  struct Entry {
    void** ptr;
    size_t bytes;
  };
  static constexpr int kMax = 8;
  size_t align_;
  Entry entries_[kMax];
  int n_ = 0;
};

}  // namespace mt::cuda
