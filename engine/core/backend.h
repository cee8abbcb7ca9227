// Why: the choice of where and in what precision a command runs (`--device`, `--precision`), resolved
// once in the app: cuda by default when a GPU is present, bf16 mixed precision on the GPU (fp32 for
// tight comparisons), fp32 on the CPU.
#pragma once

#include <string>

namespace mt {

enum class DeviceChoice { Auto, Cpu, Cuda };
enum class Precision { Auto, Fp32, Bf16 };

struct BackendChoice {
  DeviceChoice device = DeviceChoice::Auto;
  Precision precision = Precision::Auto;
};

// Parses "cpu" | "cuda" | "auto" and "fp32" | "bf16" | "auto" (InputError naming the flag otherwise).
DeviceChoice parse_device(const std::string& s);
Precision parse_precision(const std::string& s);

// Resolves Auto: cuda when this build has the CUDA backend and a GPU is present; bf16 on cuda, fp32 on
// cpu. Asking for cuda without it, or bf16 on the cpu, is an InputError.
BackendChoice resolve_backend(BackendChoice requested);

bool cuda_available();  // this build has the CUDA backend and the driver sees a GPU

}  // namespace mt
