// Why: see device.h. A missing driver or no GPU is not an error here: the caller falls back to CPU.
#include <cuda_runtime.h>

#include "cuda/device.h"

namespace mt::cuda {

DeviceInfo device_info(int device) {
  DeviceInfo info;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count <= device) {
    cudaGetLastError();  // clear the sticky "no device" error
    return info;
  }
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

}  // namespace mt::cuda

// The CPU library asks through a weak symbol whether a GPU is usable (engine/backend.cpp).
extern "C" int mt_cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}
