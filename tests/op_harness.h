// Why: the one driver of the op cases (tests/op_cases.h): every case on every backend present, each
// compared with CpuOps<double> on the same inputs by the rules of its backend:
// - CpuOps<float>: every output within the case's fp32 tolerance (relative L2); the same bits on a
//   second run (the CpuOps<double> reference too); and, for a case of our own loops only, the same bits
//   on one OpenMP thread and on two (a resumed run must be bit-identical, whatever the thread count).
// - an fp32 backend (CudaOps<float>): every output within the case's fp32 tolerance.
// - a bf16 backend (CudaOps<bf16>): every output's error against float64 at most twice that of a plain
//   bf16 version of the op (fp32 arithmetic on the same bf16 inputs, bf16 outputs), so the kernels lose
//   nothing beyond bf16 storage.
// Integer outputs (Kind::Exact) must be identical on every backend. The CPU test binary runs the driver
// over the CPU backend, the GPU test binary over the CPU and CUDA backends.
#pragma once

#include <catch2/catch.hpp>
#include <omp.h>

#include <cstring>
#include <string>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "tests/op_cases.h"

namespace mt::optest {

// A backend under test: an Ops<float> (the CPU one, or an fp32 GPU one) or an Ops<bf16>.
struct Backend {
  enum class Kind { CpuFp32, Fp32, Bf16 };
  std::string name;
  Kind kind = Kind::Fp32;
  Ops<float>* fp32_ops = nullptr;  // CpuFp32, Fp32
  Ops<bf16>* bf16_ops = nullptr;   // Bf16
};

inline Backend cpu_backend() {
  static CpuOps<float> ops;
  return {"cpu fp32", Backend::Kind::CpuFp32, &ops, nullptr};
}

inline bool same_bits(const Outputs& a, const Outputs& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const Vec &x = a[i].values, &y = b[i].values;
    if (x.size() != y.size() || (!x.empty() && std::memcmp(x.data(), y.data(), sizeof(double) * x.size()) != 0))
      return false;
  }
  return true;
}

// Each output against the reference's: Exact outputs identical, the others' relative L2 error e judged
// by within(i, e).
template <typename Within>
void check_outputs(const Outputs& out, const Outputs& ref, Within within) {
  REQUIRE(out.size() == ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    INFO(ref[i].name);
    if (ref[i].kind == Kind::Exact) CHECK(out[i].values == ref[i].values);
    else within(i, rel_l2(out[i].values, ref[i].values));
  }
}

// Within `tol` of the float64 reference.
inline void check_fp32(const Outputs& out, const Outputs& ref, double tol) {
  check_outputs(out, ref, [&](size_t, double e) {
    INFO("relative error " << e << " (tolerance " << tol << ")");
    CHECK(e <= tol);
  });
}

// An error against the float64 reference at most twice that of the plain bf16 version, plus a floor for
// outputs that the plain version gets almost exact (fp32 statistics).
inline void check_bf16(const Outputs& out, const Outputs& plain, const Outputs& ref, double floor = 2e-6) {
  REQUIRE(plain.size() == ref.size());
  check_outputs(out, ref, [&](size_t i, double e) {
    const double p = rel_l2(plain[i].values, ref[i].values);
    INFO("relative error " << e << ", plain bf16 " << p);
    CHECK(e <= 2 * p + floor);
  });
}

// The plain bf16 version's outputs from fp32 ones: compute outputs rounded to bf16.
inline Outputs plain_bf16(Outputs o) {
  for (auto& x : o)
    if (x.kind == Kind::Compute) x.values = rounded(x.values, round_bf16);
  return o;
}

// One case on one backend, against the reference.
inline void check_on(const OpCase& c, const Backend& b) {
  INFO("backend " << b.name);
  CpuOps<double> ref;
  switch (b.kind) {
    case Backend::Kind::CpuFp32: {
      const Outputs out = c.run_f32(*b.fp32_ops, false);
      check_fp32(out, c.run_f64(ref, false), c.fp32_tol);
      CHECK(same_bits(out, c.run_f32(*b.fp32_ops, false)));
      CHECK(same_bits(c.run_f64(ref, false), c.run_f64(ref, false)));
      if (c.thread_count_invariant) {
        INFO("one OpenMP thread against two");
        const int threads = omp_get_max_threads();
        omp_set_num_threads(1);
        const Outputs one = c.run_f32(*b.fp32_ops, false);
        omp_set_num_threads(2);
        const Outputs two = c.run_f32(*b.fp32_ops, false);
        omp_set_num_threads(threads);
        CHECK(same_bits(one, two));
      }
      break;
    }
    case Backend::Kind::Fp32:
      check_fp32(c.run_f32(*b.fp32_ops, false), c.run_f64(ref, false), c.fp32_tol);
      break;
    case Backend::Kind::Bf16: {
      CpuOps<float> cpu32;
      const Outputs plain = c.plain_bf16_version ? c.plain_bf16_version() : plain_bf16(c.run_f32(cpu32, true));
      check_bf16(c.run_bf16(*b.bf16_ops, true), plain, c.run_f64(ref, true));
      break;
    }
  }
}

// Every case of op_cases() on every backend of `backends`, one section per case (named in a failure,
// with its seed).
inline void check_op_cases(const std::vector<Backend>& backends) {
  for (const OpCase& c : op_cases()) {
    DYNAMIC_SECTION(c.name) {
      INFO("op case " << c.name << ", seed " << c.seed);
      for (const Backend& b : backends) check_on(c, b);
    }
  }
}

}  // namespace mt::optest
