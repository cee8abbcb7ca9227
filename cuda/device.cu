// Why: see device.h. A missing driver or no GPU is not an error for device_info: the caller falls back
// to the CPU. CudaDevice checks every call (cuda/check.h).
#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/device.h"

namespace mt::cuda {

DeviceProbe probe_devices() {
  DeviceProbe p;
  const cudaError_t e = cudaGetDeviceCount(&p.count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error
    p.count = 0;
    p.error = int(e);
    p.error_text = str(cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
  }
  return p;
}

DeviceInfo device_info(int device) {
  DeviceInfo info;
  if (probe_devices().count <= device) return info;
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) return info;
  info.present = true;
  info.name = prop.name;
  info.major = prop.major;
  info.minor = prop.minor;
  info.memory_bytes = prop.totalGlobalMem;
  info.sm_count = prop.multiProcessorCount;
  return info;
}

CudaDevice::CudaDevice(int device_index) : index_(device_index) {
  info_ = device_info(device_index);
  MT_CHECK(info_.present, "CUDA device ", device_index, " is not available");
  MT_CUDA_CHECK(cudaSetDevice(device_index));
  MT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
}

CudaDevice::~CudaDevice() {
  // Destructors must not throw: errors here are ignored (the process is usually ending).
  if (stream_) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  for (auto& [p, n] : sizes_) cudaFree(p);
}

std::string CudaDevice::name() const { return str("cuda:", index_, " ", info_.name); }

void* CudaDevice::alloc(size_t bytes) {
  if (bytes == 0) bytes = 1;
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw Error(str("CUDA out of memory allocating ", bytes, " bytes on ", name(), " (", free_b >> 20, " MiB free of ",
                    total_b >> 20, " MiB, ", current_ >> 20,
                    " MiB held by moetrain): lower train.micro_batch_size or the model size"));
  }
  MT_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_));
  counters().launches += 1;
  sizes_[p] = bytes;
  current_ += bytes;
  if (current_ > peak_) peak_ = current_;
  return p;
}

void CudaDevice::release(void* ptr) {
  if (!ptr) return;
  auto it = sizes_.find(ptr);
  MT_CHECK(it != sizes_.end(), "release of a pointer not allocated by ", name());
  current_ -= it->second;
  sizes_.erase(it);
  // cudaFree waits for the device, so work still queued on the buffer completes first: a host sync.
  MT_CUDA_CHECK(cudaFree(ptr));
  counters().host_syncs += 1;
}

void CudaDevice::zero(void* ptr, size_t bytes) {
  if (!bytes) return;
  MT_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, stream_));
  counters().launches += 1;
}

void CudaDevice::copy(void* dst, const void* src, size_t bytes, CopyKind kind) {
  if (bytes == 0 || dst == src) return;
  counters().launches += 1;
  switch (kind) {
    case CopyKind::DeviceToDevice:
      MT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
      return;
    case CopyKind::HostToDevice:
      MT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
      break;
    case CopyKind::DeviceToHost:
      MT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
      break;
  }
  // The host buffer may be read or reused as soon as copy() returns.
  synchronize();
}

void CudaDevice::synchronize() {
  MT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  counters().host_syncs += 1;
}

}  // namespace mt::cuda

// The CPU library asks through a weak symbol whether a GPU is usable (engine/core/backend.cpp).
extern "C" int mt_cuda_device_count() { return mt::cuda::probe_devices().count; }
