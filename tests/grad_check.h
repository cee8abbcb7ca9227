// Why: one finite-difference rule for every gradient test, the ops' (tests/test_ops_cpu_grad.cpp) and the
// whole model's (tests/test_model_grad.cpp), so that "matches finite differences" means the same thing
// in both. In float64, the central difference (loss(x + h) - loss(x - h)) / 2h with h = 1e-5 balances
// truncation (~h^2) against rounding (~1e-16 |loss| / h); the worst errors seen are ~1e-7 relative.
// An element's error is relative to the larger of its two gradients, but never to less than 1e-3 of
// the tensor's largest gradient: an element whose gradient is tiny next to that is mostly rounding
// noise in its difference quotient. The error must stay below 1e-6.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace mt::test {

constexpr double kFdStep = 1e-5;
constexpr double kFdTol = 1e-6;

// Checks analytic[i], the gradient of loss() in x[i], against the central difference, for every i in
// `elements` (every element of the tensor when empty); x and analytic hold the tensor's n elements, and
// x is restored after each difference. Reports the worst element.
inline void check_gradient(const std::string& what, double* x, const double* analytic, size_t n,
                           const std::function<double()>& loss, const std::vector<size_t>& elements = {}) {
  double gmax = 0;
  for (size_t i = 0; i < n; ++i) gmax = std::max(gmax, std::fabs(analytic[i]));
  double worst = 0, worst_num = 0, worst_ana = 0;
  size_t worst_i = 0, checked = 0;
  auto check_one = [&](size_t i) {
    const double saved = x[i];
    x[i] = saved + kFdStep;
    const double up = loss();
    x[i] = saved - kFdStep;
    const double down = loss();
    x[i] = saved;
    const double num = (up - down) / (2 * kFdStep);
    const double err =
        std::fabs(num - analytic[i]) / std::max({std::fabs(num), std::fabs(analytic[i]), 1e-3 * gmax, 1e-300});
    if (!(err <= worst)) {  // NaN counts as the worst
      worst = std::isnan(err) ? INFINITY : err;
      worst_i = i;
      worst_num = num;
      worst_ana = analytic[i];
    }
    ++checked;
  };
  if (elements.empty())
    for (size_t i = 0; i < n; ++i) check_one(i);
  else
    for (size_t i : elements) check_one(i);
  INFO(what << ": worst of " << checked << " of " << n << " elements: [" << worst_i << "] analytic " << worst_ana
            << ", finite difference " << worst_num << ", relative error " << worst);
  CHECK(gmax > 0);  // a gradient that is zero everywhere would test nothing
  CHECK(worst < kFdTol);
}

inline void check_gradient(const std::string& what, std::vector<double>& x, const std::vector<double>& analytic,
                           const std::function<double()>& loss) {
  REQUIRE(x.size() == analytic.size());
  check_gradient(what, x.data(), analytic.data(), x.size(), loss);
}

}  // namespace mt::test
