// Why: the messages of cuda/check.h, in one place, each with a hint at what usually causes the error.
#include "cuda/check.h"

namespace mt::cuda {

void fail(const char* what, const char* statement, const char* file, int line, const std::string& detail) {
  throw Error(check_message(what, statement, file, line, detail));
}

std::string cuda_error_detail(cudaError_t e) {
  std::string s = str(cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
  switch (e) {
    case cudaErrorMemoryAllocation:
      return s + "; the GPU is out of memory: lower train.micro_batch_size or the sequence length";
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return s + "; no usable GPU or driver: run with --device cpu";
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
      return s + "; a kernel faulted (possibly an earlier one: run with CUDA_LAUNCH_BLOCKING=1 or "
                 "compute-sanitizer to find it)";
    case cudaErrorInvalidConfiguration:
      return s + "; a kernel's launch configuration is invalid (a size outside what the kernel supports)";
    case cudaErrorNoKernelImageForDevice:
      return s + "; this build has no code for this GPU: rebuild with -DMOETRAIN_CUDA_ARCH=<its sm>";
    default:
      return s;
  }
}

std::string cublas_error_detail(cublasStatus_t st) {
  std::string s = str(cublasGetStatusName(st), " (", cublasGetStatusString(st), ")");
  switch (st) {
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return s + "; no cuBLASLt algorithm for this shape, type and alignment";
    case CUBLAS_STATUS_INVALID_VALUE:
      return s + "; a GEMM size or leading dimension is invalid";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return s + "; out of memory in cuBLAS";
    default:
      return s;
  }
}

std::string nccl_error_detail(ncclResult_t r) {
  std::string s = str("NCCL ", int(r), " (", ncclGetErrorString(r), ")");
  switch (r) {
    case ncclUnhandledCudaError:
    case ncclSystemError:
      return s + "; set NCCL_DEBUG=WARN for details";
    case ncclInvalidUsage:
      return s + "; several ranks on one GPU cannot use NCCL: set MOETRAIN_COMM=mpi";
    case ncclRemoteError:
      return s + "; a peer rank failed";
    default:
      return s;
  }
}

}  // namespace mt::cuda
