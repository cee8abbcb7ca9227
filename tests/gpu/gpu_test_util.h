// Why: what the GPU tests share: the skip exit code (main.cpp runs no test without a GPU), one CUDA
// backend per test process, host <-> backend buffers through the Device interface (so the same test
// body runs on CpuOps and CudaOps), and the error measures of the comparisons: ‖a − b‖ / ‖b‖ against a
// float64 reference.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cuda/context.h"
#include "cuda/cuda_ops.h"
#include "cuda/device.h"
#include "engine/model/ops.h"

extern "C" int mt_cuda_device_count();

namespace mt::gputest {

inline bool have_gpu() {
  static const bool present = mt_cuda_device_count() > 0;
  return present;
}

// The exit code of a GPU test process that found no GPU: ctest's SKIP_RETURN_CODE, run.sh's SKIPPED.
constexpr int kSkipped = 77;

// One device, context and pair of ops for the whole test process.
struct Gpu {
  cuda::CudaDevice device{0};
  cuda::Context ctx{device};
  cuda::CudaOps<float> fp32{ctx};
  cuda::CudaOps<mt::bf16> bf16_ops{ctx};
};
inline Gpu& gpu() {
  static Gpu g;
  return g;
}

using Vec = std::vector<double>;

// Host value conversions for the element types of the backends.
template <typename T>
inline T from_double(double x) {
  if constexpr (std::is_same_v<T, bf16>) return to_bf16(float(x));
  else return T(x);
}
template <typename T>
inline double to_double(T x) {
  if constexpr (std::is_same_v<T, bf16>) return double(to_float(x));
  else return double(x);
}
inline double round_bf16(double x) { return double(to_float(to_bf16(float(x)))); }
inline double round_f32(double x) { return double(float(x)); }
inline Vec rounded(const Vec& v, double (*f)(double)) {
  Vec r(v);
  for (double& x : r) x = f(x);
  return r;
}

inline Vec random_vec(std::mt19937_64& rng, size_t n, double lo = -1, double hi = 1) {
  std::uniform_real_distribution<double> u(lo, hi);
  Vec v(n);
  for (double& x : v) x = u(rng);
  return v;
}

// A buffer of `n` elements of X in a backend's memory, filled from doubles or poisoned (NaN) so that an
// element the op does not write shows up in the comparison.
template <typename X>
class Buf {
 public:
  Buf(Device& dev, size_t n) : dev_(dev), n_(n) { ptr_ = static_cast<X*>(dev.alloc(std::max<size_t>(1, n) * sizeof(X))); }
  Buf(Device& dev, const Vec& v) : Buf(dev, v.size()) { upload(v); }
  ~Buf() { dev_.release(ptr_); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  X* get() { return ptr_; }
  operator X*() { return ptr_; }
  void upload(const Vec& v) {
    std::vector<X> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = from_double<X>(v[i]);
    if (!h.empty()) dev_.copy(ptr_, h.data(), sizeof(X) * h.size(), CopyKind::HostToDevice);
  }
  void poison() { upload(Vec(n_, std::nan(""))); }
  Vec download() {
    std::vector<X> h(n_);
    dev_.synchronize();
    if (n_) dev_.copy(h.data(), ptr_, sizeof(X) * n_, CopyKind::DeviceToHost);
    Vec v(n_);
    for (size_t i = 0; i < n_; ++i) v[i] = to_double(h[i]);
    return v;
  }

 private:
  Device& dev_;
  size_t n_;
  X* ptr_ = nullptr;
};

// ‖a − b‖2 / ‖b‖2 (‖a − b‖2 when b is zero); NaN anywhere gives infinity.
inline double rel_l2(const Vec& a, const Vec& b) {
  REQUIRE(a.size() == b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// An op's outputs by name; `compute` marks outputs of type T (rounded to bf16 in the plain bf16
// version), the others are P (fp32) or integers.
struct Output {
  std::string name;
  Vec values;
  bool compute = true;
};
using Outputs = std::vector<Output>;

// fp32 mode: every output within `tol` (relative, L2) of the float64 reference.
inline void check_fp32(const Outputs& gpu_out, const Outputs& ref, double tol = 1e-5) {
  REQUIRE(gpu_out.size() == ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = rel_l2(gpu_out[i].values, ref[i].values);
    INFO("fp32 " << ref[i].name << ": relative error " << e << " (tolerance " << tol << ")");
    CHECK(e <= tol);
  }
}

// bf16 mode: every output's error against the float64 reference is at most twice that of the plain bf16
// version (the op in fp32 on the same bf16 inputs, its T outputs rounded to bf16), plus a floor for
// outputs that the plain version gets almost exact (fp32 statistics).
inline void check_bf16(const Outputs& gpu_out, const Outputs& plain, const Outputs& ref, double floor = 2e-6) {
  REQUIRE(gpu_out.size() == ref.size());
  REQUIRE(plain.size() == ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = rel_l2(gpu_out[i].values, ref[i].values);
    const double p = rel_l2(plain[i].values, ref[i].values);
    INFO("bf16 " << ref[i].name << ": relative error " << e << ", plain bf16 " << p);
    CHECK(e <= 2 * p + floor);
  }
}

// The plain bf16 version's outputs from fp32 ones: compute outputs rounded to bf16.
inline Outputs plain_bf16(Outputs o) {
  for (auto& x : o)
    if (x.compute) x.values = rounded(x.values, round_bf16);
  return o;
}

}  // namespace mt::gputest
