// Why: `moetrain bench` and the trainer's MFU need the FLOPs each op family actually executes and,
// when asked, the time it takes. The model counts FLOPs for every GEMM and attention call it makes
// (always: it is a few additions) and times whole sections when timing is on (the device is then
// synchronised around each section, so timing is for benchmarks, not for training runs).
#pragma once

#include <array>
#include <chrono>

#include "engine/core/device.h"

namespace mt {

enum class OpFamily {
  Embedding, Norm, Linear, Attention, SwiGLU, Router, Dispatch, Experts, LmHead, Loss, TpComm,
  Optimizer, GradComm, Count
};
const char* op_family_name(OpFamily f);

class Profiler {
 public:
  static constexpr int kCount = int(OpFamily::Count);
  explicit Profiler(Device& device) : device_(device) {}

  void set_timing(bool on) { timing_ = on; }
  void add_flops(OpFamily f, double flops) { flops_[int(f)] += flops; }
  void reset() {
    flops_.fill(0);
    seconds_.fill(0);
  }
  double flops(OpFamily f) const { return flops_[int(f)]; }
  double seconds(OpFamily f) const { return seconds_[int(f)]; }
  double total_flops() const {
    double s = 0;
    for (double f : flops_) s += f;
    return s;
  }

  // Times its lifetime into family f when timing is on.
  class Scope {
   public:
    Scope(Profiler& p, OpFamily f) : p_(p), f_(f) {
      if (p_.timing_) {
        p_.device_.synchronize();
        t0_ = std::chrono::steady_clock::now();
      }
    }
    ~Scope() {
      if (p_.timing_) {
        p_.device_.synchronize();
        p_.seconds_[int(f_)] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
      }
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Profiler& p_;
    OpFamily f_;
    std::chrono::steady_clock::time_point t0_;
  };

 private:
  Device& device_;
  bool timing_ = false;
  std::array<double, kCount> flops_{};
  std::array<double, kCount> seconds_{};
};

}  // namespace mt
