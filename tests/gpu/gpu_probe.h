// Why: a GPU test process must never report "skipped" where a GPU is present but unusable. It runs its
// checks when CUDA sees a GPU; it skips (exit 77, ctest's SKIP_RETURN_CODE) only when the machine has
// no NVIDIA GPU at all (no /dev/nvidia<N>, no /proc/driver/nvidia/gpus entry), whatever CUDA answered
// (a machine without a driver answers cudaErrorInsufficientDriver); and it FAILS (exit 1, with CUDA's
// error text) when the machine has a GPU that CUDA cannot use: an old or broken driver, no libcuda on
// the library path, or every GPU hidden by CUDA_VISIBLE_DEVICES.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "cuda/device.h"

namespace mt::gputest {

// The exit code of a GPU test process that found no GPU: ctest's SKIP_RETURN_CODE, run.sh's SKIPPED.
constexpr int kSkipped = 77;

// Device files of an NVIDIA GPU on this machine (the driver's, independent of CUDA), or "" if none.
inline std::string nvidia_gpu_evidence() {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const char* dir : {"/proc/driver/nvidia/gpus"})
    if (fs::is_directory(dir, ec) && fs::directory_iterator(dir, ec) != fs::directory_iterator())
      return std::string(dir);
  for (int i = 0; i < 64; ++i) {
    const std::string dev = "/dev/nvidia" + std::to_string(i);
    if (fs::exists(dev, ec)) return dev;
  }
  return "";
}

enum class GpuVerdict { Run, Skip, Fail };

struct GpuPresence {
  GpuVerdict verdict = GpuVerdict::Skip;
  int count = 0;
  std::string why;  // for Skip and Fail
};

inline GpuPresence gpu_presence() {
  const cuda::DeviceProbe p = cuda::probe_devices();
  GpuPresence g;
  g.count = p.count;
  if (p.count > 0) {
    g.verdict = GpuVerdict::Run;
    return g;
  }
  const std::string cuda_says = p.error ? "cudaGetDeviceCount: " + p.error_text : "cudaGetDeviceCount: 0 devices";
  const std::string evidence = nvidia_gpu_evidence();
  if (evidence.empty()) {
    g.verdict = GpuVerdict::Skip;
    g.why = "no NVIDIA GPU on this machine (no /dev/nvidia<N>, no /proc/driver/nvidia/gpus); " + cuda_says;
  } else {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    g.verdict = GpuVerdict::Fail;
    g.why = evidence + " exists but CUDA sees no GPU: " + cuda_says +
            (visible ? "; CUDA_VISIBLE_DEVICES=\"" + std::string(visible) + "\"" : std::string());
  }
  return g;
}

// For a test process's main: the GPU count, or the process ends here (77 skipped, 1 failed) with a line
// on stdout saying why.
inline int require_gpu_or_exit(const char* who) {
  const GpuPresence g = gpu_presence();
  if (g.verdict == GpuVerdict::Run) return g.count;
  if (g.verdict == GpuVerdict::Skip) {
    std::printf("%s: no CUDA GPU visible: skipped (%s)\n", who, g.why.c_str());
    std::fflush(stdout);
    std::exit(kSkipped);
  }
  std::printf("%s: error: %s\n", who, g.why.c_str());
  std::fflush(stdout);
  std::exit(1);
}

}  // namespace mt::gputest
