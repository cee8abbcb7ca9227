// Why: see context.h. GEMMs: the engine's matrices are row-major and cuBLAS(Lt) is column-major; a
// row-major C (m x n) is the column-major C^T (n x m), and C^T = op(B)^T op(A)^T, so every GEMM is
// issued with the operands swapped (A' = B, B' = A), the transposes kept, m and n exchanged and the
// leading dimensions unchanged. Accumulation is always fp32 (CUBLAS_COMPUTE_32F: true fp32, no TF32, so
// that the fp32 mode matches the CPU to 1e-5); bf16 inputs run on the tensor cores.
#include <cuda_runtime.h>

#include <algorithm>
#include <functional>

#include "cuda/check.h"
#include "cuda/common.cuh"
#include "cuda/context.h"
#include "cuda/cudnn_attention.h"

namespace mt::cuda {

namespace {

// 32 MiB: what cuBLASLt's Hopper kernels ask for at most (NVIDIA recommends 32 MiB on sm_90).
constexpr size_t kWorkspaceBytes = size_t(32) << 20;
// The scratch reservations (see context.h): device, and pinned host (router counts, route plans).
constexpr size_t kScratchBytes = size_t(64) << 20;
constexpr size_t kHostScratchBytes = size_t(1) << 20;
// GEMM plans kept: a dense step has a few dozen shapes; an MoE step adds a few per row-count bucket.
constexpr size_t kMaxPlans = 4096;

// The bucket of a size in the plan key: the next power of two, at least 16.
int bucket(int x) {
  int b = 16;
  while (b < x) b <<= 1;
  return b;
}

// Largest power of two (at most 256) that divides the address: cuBLASLt chooses kernels by it.
int alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int al = 256;
  while (al > 1 && (a % uintptr_t(al)) != 0) al >>= 1;
  return al;
}

template <typename D>
__global__ void scale_matrix_kernel(D* c, int m, int n, int ldc, float beta) {
  const size_t total = size_t(m) * n;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    D& x = c[(i / n) * size_t(ldc) + i % n];
    x = beta == 0.f ? from_f<D>(0.f) : from_f<D>(beta * to_f(x));
  }
}

}  // namespace

bool Context::PlanKey::operator==(const PlanKey& o) const {
  return ab_type == o.ab_type && c_type == o.c_type && ta == o.ta && tb == o.tb && m_bucket == o.m_bucket &&
         n == o.n && k_bucket == o.k_bucket && lda == o.lda && ldb == o.ldb && ldc == o.ldc && align_a == o.align_a &&
         align_b == o.align_b && align_c == o.align_c;
}

size_t Context::PlanKeyHash::operator()(const PlanKey& k) const {
  size_t h = 0;
  for (int v : {k.ab_type, k.c_type, k.ta, k.tb, k.m_bucket, k.n, k.k_bucket, k.lda, k.ldb, k.ldc, k.align_a, k.align_b,
                k.align_c})
    h = h * 1000003u ^ std::hash<int>()(v);
  return h;
}

Context::Context(CudaDevice& device) : device_(device) {
  MT_CUDA_CHECK(cudaSetDevice(device.index()));
  MT_CUBLAS_CHECK(cublasLtCreate(&lt_));
  MT_CUBLAS_CHECK(cublasCreate(&blas_));
  MT_CUBLAS_CHECK(cublasSetStream(blas_, device.stream()));
  // The plain cuBLAS fallback must not use TF32 either.
  MT_CUBLAS_CHECK(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));
  workspace_bytes_ = kWorkspaceBytes;
  MT_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
  MT_CUBLAS_CHECK(cublasSetWorkspace(blas_, workspace_, workspace_bytes_));
  // Scratch is stream-ordered memory from its first byte to its last (cudaMallocAsync / cudaFreeAsync,
  // never mixed with cudaMalloc / cudaFree), so that growing it never waits for the device.
  MT_CUDA_CHECK(cudaMallocAsync(&scratch_, kScratchBytes, device.stream()));
  scratch_bytes_ = kScratchBytes;
  MT_CUDA_CHECK(cudaMallocHost(&host_scratch_, kHostScratchBytes));
  host_scratch_bytes_ = kHostScratchBytes;
}

void Context::destroy(Plan& p) {
  if (p.op) cublasLtMatmulDescDestroy(p.op);
  if (p.a) cublasLtMatrixLayoutDestroy(p.a);
  if (p.b) cublasLtMatrixLayoutDestroy(p.b);
  if (p.c) cublasLtMatrixLayoutDestroy(p.c);
  p = Plan{};
}

Context::~Context() {
  cudaStreamSynchronize(device_.stream());
  cudnn_.reset();
  for (auto& kp : plans_) destroy(kp.second);
  if (blas_) cublasDestroy(blas_);
  if (lt_) cublasLtDestroy(lt_);
  if (workspace_) cudaFree(workspace_);
  if (scratch_) {
    cudaFreeAsync(scratch_, device_.stream());
    cudaStreamSynchronize(device_.stream());
  }
  if (host_scratch_) cudaFreeHost(host_scratch_);
}

void Context::wait() {
  MT_CUDA_CHECK(cudaStreamSynchronize(stream()));
  device_.counters().host_syncs += 1;
}

CudnnAttention& Context::cudnn() {
  if (!cudnn_) cudnn_ = std::make_unique<CudnnAttention>(*this);
  return *cudnn_;
}

void* Context::scratch(size_t bytes) {
  if (bytes > scratch_bytes_) {
    // Beyond the reservation (a very wide model): grows by half again, stream-ordered, so the old block
    // is freed once the kernels queued before it are done, and the host does not wait.
    const size_t want = std::max(bytes, scratch_bytes_ + scratch_bytes_ / 2);
    MT_CUDA_CHECK(cudaFreeAsync(scratch_, stream()));
    scratch_ = nullptr;
    scratch_bytes_ = 0;
    MT_CUDA_CHECK(cudaMallocAsync(&scratch_, want, stream()));
    scratch_bytes_ = want;
  }
  return scratch_;
}

void* Context::host_scratch(size_t bytes) {
  if (bytes > host_scratch_bytes_) {
    // Beyond the reservation only. The stream may still copy into the old block: wait before freeing it.
    wait();
    if (host_scratch_) MT_CUDA_CHECK(cudaFreeHost(host_scratch_));
    host_scratch_ = nullptr;
    host_scratch_bytes_ = 0;
    const size_t want = std::max<size_t>(bytes, 4096);
    MT_CUDA_CHECK(cudaMallocHost(&host_scratch_, want));
    host_scratch_bytes_ = want;
  }
  return host_scratch_;
}

Context::Plan& Context::plan(const PlanKey& key) {
  auto it = plan_index_.find(key);
  if (it != plan_index_.end()) {
    plans_.splice(plans_.begin(), plans_, it->second);
    return it->second->second;
  }
  if (plans_.size() >= kMaxPlans) {
    // The descriptors are read when a matmul is queued, so a plan of queued work may be destroyed.
    destroy(plans_.back().second);
    plan_index_.erase(plans_.back().first);
    plans_.pop_back();
  }
  Plan p;
  const cublasOperation_t ta = key.tb ? CUBLAS_OP_T : CUBLAS_OP_N;  // A' = B
  const cublasOperation_t tb = key.ta ? CUBLAS_OP_T : CUBLAS_OP_N;  // B' = A
  MT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  MT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  MT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  // Column-major shapes: A' is (n x k) after op, B' is (k x m) after op, C' is (n x m); here with the
  // bucket sizes (the heuristic's question), set to the exact ones at each call (set_sizes).
  const auto ab = cudaDataType_t(key.ab_type), ct = cudaDataType_t(key.c_type);
  MT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, ab, 1, 1, key.ldb));
  MT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, ab, 1, 1, key.lda));
  MT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, ct, 1, 1, key.ldc));
  p.trans_a = key.ta != 0;
  p.trans_b = key.tb != 0;
  // The bucket sizes, but no more rows than a leading dimension holds (the exact sizes always fit).
  int m_h = key.m_bucket, k_h = key.k_bucket;
  if (key.ta) m_h = std::min(m_h, key.lda);
  else k_h = std::min(k_h, key.lda);
  if (key.tb) k_h = std::min(k_h, key.ldb);
  set_sizes(p, m_h, key.n, k_h);

  cublasLtMatmulPreference_t pref = nullptr;
  MT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  MT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                       &workspace_bytes_, sizeof(workspace_bytes_)));
  const uint32_t al_a = uint32_t(key.align_b), al_b = uint32_t(key.align_a), al_c = uint32_t(key.align_c);
  MT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                                       sizeof(al_a)));
  MT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                                       sizeof(al_b)));
  MT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c,
                                                       sizeof(al_c)));
  MT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c,
                                                       sizeof(al_c)));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(lt_, p.op, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
    p.algo = result.algo;
    p.have_algo = true;
  } else if (st != CUBLAS_STATUS_NOT_SUPPORTED && st != CUBLAS_STATUS_SUCCESS) {
    MT_CUBLAS_CHECK(st);
  }
  plans_.emplace_front(key, p);
  plan_index_.emplace(key, plans_.begin());
  return plans_.front().second;
}

void Context::set_sizes(Plan& p, int m, int n, int k) {
  auto set = [](cublasLtMatrixLayout_t l, uint64_t rows, uint64_t cols) {
    MT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_ROWS, &rows, sizeof(rows)));
    MT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof(cols)));
  };
  // A' = B: (n x k) after op, stored (k x n) when B is not transposed in the row-major view.
  set(p.a, p.trans_b ? uint64_t(k) : uint64_t(n), p.trans_b ? uint64_t(n) : uint64_t(k));
  // B' = A: (k x m) after op, stored (m x k) when A is transposed in the row-major view.
  set(p.b, p.trans_a ? uint64_t(m) : uint64_t(k), p.trans_a ? uint64_t(k) : uint64_t(m));
  set(p.c, uint64_t(n), uint64_t(m));
}

void Context::scale_matrix(void* c, cudaDataType_t c_type, int m, int n, int ldc, float beta) {
  const int threads = 256;
  const unsigned blocks = grid_for(size_t(m) * n, threads, 4096);
  if (c_type == CUDA_R_32F)
    MT_LAUNCH(*this, scale_matrix_kernel<float>, blocks, threads, 0, static_cast<float*>(c), m, n, ldc, beta);
  else
    MT_LAUNCH(*this, scale_matrix_kernel<__nv_bfloat16>, blocks, threads, 0, static_cast<__nv_bfloat16*>(c), m, n, ldc,
              beta);
}

void Context::gemm(void* c, cudaDataType_t c_type, const void* a, const void* b, cudaDataType_t ab_type,
                   const GemmShape& s, float alpha, float beta) {
  s.check();
  if (s.m == 0 || s.n == 0) return;
  if (s.k == 0) return scale_matrix(c, c_type, s.m, s.n, s.ldc, beta);

  PlanKey key{int(ab_type), int(c_type), s.trans_a == Trans::Yes, s.trans_b == Trans::Yes, bucket(s.m), s.n,
              bucket(s.k), s.lda, s.ldb, s.ldc, alignment_of(a), alignment_of(b), alignment_of(c)};
  Plan& p = plan(key);
  if (p.have_algo) {
    set_sizes(p, s.m, s.n, s.k);
    const cublasStatus_t st = cublasLtMatmul(lt_, p.op, &alpha, b, p.a, a, p.b, &beta, c, p.c, c, p.c, &p.algo,
                                             workspace_, workspace_bytes_, stream());
    if (st == CUBLAS_STATUS_SUCCESS) {
      count_launches(1);
      return;
    }
    // The bucket's algorithm refuses these exact sizes: the general path below.
    if (st != CUBLAS_STATUS_NOT_SUPPORTED && st != CUBLAS_STATUS_INVALID_VALUE) MT_CUBLAS_CHECK(st);
  }
  // No cuBLASLt kernel for this alignment / leading dimension (or size): the general cuBLAS path (same math).
  MT_CUBLAS_CHECK(cublasGemmEx(blas_, s.trans_b == Trans::Yes ? CUBLAS_OP_T : CUBLAS_OP_N,
                               s.trans_a == Trans::Yes ? CUBLAS_OP_T : CUBLAS_OP_N, s.n, s.m, s.k, &alpha, b, ab_type,
                               s.ldb, a, ab_type, s.lda, &beta, c, c_type, s.ldc, CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
  count_launches(1);
}

}  // namespace mt::cuda
