// Why: what the CUDA backend knows about the machine (whether a GPU is present, its name, memory and
// compute capability), and CudaDevice: the engine's Device (engine/core/device.h) for one GPU with one
// stream, on which every kernel, GEMM and copy of a backend is queued in order. Declared without
// kernel code so that host code compiled by g++ can use it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <unordered_map>

#include "engine/core/device.h"

namespace mt::cuda {

struct DeviceInfo {
  bool present = false;
  std::string name;
  int major = 0, minor = 0;  // compute capability
  size_t memory_bytes = 0;
  int sm_count = 0;
};

// What cudaGetDeviceCount answers: the GPUs the CUDA runtime can use, or its error. A machine without
// any NVIDIA driver answers an error too (no libcuda: cudaErrorInsufficientDriver), as does a broken or
// too old driver on a GPU machine; callers that must not mistake the second for the first (the GPU
// checks) look for the GPU by other means (tests/gpu/gpu_probe.h, scripts/gpu_run.sh).
struct DeviceProbe {
  int count = 0;
  int error = 0;           // the cudaError_t, 0 on success
  std::string error_text;  // "cudaErrorInsufficientDriver (CUDA driver version is insufficient ...)"
};
DeviceProbe probe_devices();

// Device `device` (the one chosen by local rank); present = false when the driver finds no GPU.
DeviceInfo device_info(int device = 0);

// One GPU and its stream. Copies that touch host memory wait for the stream (the host may read or
// reuse its buffer on return); device-to-device copies, zeroing and kernels are only queued.
// Allocations are plain cudaMalloc (no managed memory) and zero-filled, as Device requires.
class CudaDevice final : public Device {
 public:
  explicit CudaDevice(int device_index);
  ~CudaDevice() override;
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;

  DeviceKind kind() const override { return DeviceKind::Cuda; }
  std::string name() const override;
  void* alloc(size_t bytes) override;
  void release(void* ptr) override;
  void zero(void* ptr, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes, CopyKind kind) override;
  void synchronize() override;
  size_t peak_bytes() const override { return peak_; }

  int index() const { return index_; }
  const DeviceInfo& info() const { return info_; }
  cudaStream_t stream() const { return stream_; }

 private:
  int index_;
  DeviceInfo info_;
  cudaStream_t stream_ = nullptr;
  std::unordered_map<void*, size_t> sizes_;
  size_t current_ = 0, peak_ = 0;
};

}  // namespace mt::cuda
