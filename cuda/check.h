// Why: every CUDA, cuBLAS(Lt) and NCCL call is checked in release builds too. A failed call becomes an
// mt::Error (exit 1, or MPI_Abort of the whole job under mpirun) naming the statement, file:line, the
// library's own error string and a hint at the usual cause, instead of a crash much later.
// Kernel launches are checked with MT_CUDA_CHECK_LAUNCH() right after the <<<>>> (launch
// configuration errors); faults inside a kernel surface at the next synchronising call.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

#include "engine/core/check.h"

namespace mt::cuda {

// Throws mt::Error: "<what>: <statement> at file:line: <detail>; <hint>".
[[noreturn]] void fail(const char* what, const char* statement, const char* file, int line,
                       const std::string& detail);

// The hint for a CUDA runtime error (out of memory, no device, an illegal address...).
std::string cuda_error_detail(cudaError_t e);
std::string cublas_error_detail(cublasStatus_t s);
std::string nccl_error_detail(ncclResult_t r);

}  // namespace mt::cuda

#define MT_CUDA_CHECK(call)                                                                      \
  do {                                                                                           \
    cudaError_t mt_cuda_e_ = (call);                                                             \
    if (mt_cuda_e_ != cudaSuccess)                                                               \
      ::mt::cuda::fail("CUDA call failed", #call, __FILE__, __LINE__,                            \
                       ::mt::cuda::cuda_error_detail(mt_cuda_e_));                               \
  } while (0)

// After a kernel launch: a bad configuration (too many threads, too much shared memory) is reported
// here; cudaGetLastError also clears the error so that it is not blamed on a later call.
#define MT_CUDA_CHECK_LAUNCH() MT_CUDA_CHECK(cudaGetLastError())

#define MT_CUBLAS_CHECK(call)                                                                    \
  do {                                                                                           \
    cublasStatus_t mt_cublas_s_ = (call);                                                        \
    if (mt_cublas_s_ != CUBLAS_STATUS_SUCCESS)                                                   \
      ::mt::cuda::fail("cuBLAS call failed", #call, __FILE__, __LINE__,                          \
                       ::mt::cuda::cublas_error_detail(mt_cublas_s_));                           \
  } while (0)

#define MT_NCCL_CHECK(call)                                                                      \
  do {                                                                                           \
    ncclResult_t mt_nccl_r_ = (call);                                                            \
    if (mt_nccl_r_ != ncclSuccess)                                                               \
      ::mt::cuda::fail("NCCL call failed", #call, __FILE__, __LINE__,                            \
                       ::mt::cuda::nccl_error_detail(mt_nccl_r_));                               \
  } while (0)
