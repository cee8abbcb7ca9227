// Why: what the CUDA backend knows about the machine: whether a GPU is present and its name, memory
// and compute capability. Declared without CUDA types so that host code compiled by g++ can ask.
#pragma once

#include <string>

namespace mt::cuda {

struct DeviceInfo {
  bool present = false;
  std::string name;
  int major = 0, minor = 0;  // compute capability
  size_t memory_bytes = 0;
  int sm_count = 0;
};

// Device 0 (or the device chosen by local rank); present = false when the driver finds no GPU.
DeviceInfo device_info(int device = 0);

}  // namespace mt::cuda
