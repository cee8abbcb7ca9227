// Why: see backend.h. The CUDA query is a weak link: this file is in the CPU library, and the CUDA
// library (when built) provides mt_cuda_device_count.
#include "engine/core/backend.h"

#include "engine/core/check.h"

extern "C" int mt_cuda_device_count() __attribute__((weak));

namespace mt {

DeviceChoice parse_device(const std::string& s) {
  if (s == "auto") return DeviceChoice::Auto;
  if (s == "cpu") return DeviceChoice::Cpu;
  if (s == "cuda") return DeviceChoice::Cuda;
  throw InputError("--device: unknown device \"" + s + "\" (expected cpu, cuda or auto)");
}

Precision parse_precision(const std::string& s) {
  if (s == "auto") return Precision::Auto;
  if (s == "fp32") return Precision::Fp32;
  if (s == "bf16") return Precision::Bf16;
  throw InputError("--precision: unknown precision \"" + s + "\" (expected fp32, bf16 or auto)");
}

bool cuda_available() { return mt_cuda_device_count && mt_cuda_device_count() > 0; }

BackendChoice resolve_backend(BackendChoice r) {
  if (r.device == DeviceChoice::Auto) r.device = cuda_available() ? DeviceChoice::Cuda : DeviceChoice::Cpu;
  if (r.device == DeviceChoice::Cuda)
    MT_INPUT(cuda_available(), "--device cuda: ",
             mt_cuda_device_count ? "no GPU is visible to the CUDA driver" : "this build has no CUDA backend (MOETRAIN_CUDA=OFF or nvcc not found)");
  if (r.precision == Precision::Auto) r.precision = r.device == DeviceChoice::Cuda ? Precision::Bf16 : Precision::Fp32;
  MT_INPUT(!(r.device == DeviceChoice::Cpu && r.precision == Precision::Bf16),
           "--precision bf16: the CPU backend computes in fp32 (use --device cuda for bf16)");
  return r;
}

}  // namespace mt
