// Why: see fit.h. The fit works in x = log(C / C0), C0 the geometric mean of the budgets, so that budgets
// of 1e13 or 1e22 FLOPs condition the same way.
#include "sweep/fit.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/core/check.h"

namespace mt {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The law in fitting form: L = exp(ln_a + b x) + c with x = log(C / C0).
struct Params {
  double ln_a = 0, b = 0, c = 0;
};

double sum_sq(const Params& p, const std::vector<double>& x, const std::vector<double>& y) {
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double r = std::exp(p.ln_a + p.b * x[i]) + p.c - y[i];
    s += r * r;
  }
  return s;
}

// Solves the 3x3 system m d = v by Gaussian elimination with partial pivoting; false if singular.
bool solve3(double m[3][3], double v[3], double d[3]) {
  for (int col = 0; col < 3; ++col) {
    int piv = col;
    for (int r = col + 1; r < 3; ++r)
      if (std::fabs(m[r][col]) > std::fabs(m[piv][col])) piv = r;
    if (!(std::fabs(m[piv][col]) > 0)) return false;
    if (piv != col) {
      std::swap(m[piv], m[col]);
      std::swap(v[piv], v[col]);
    }
    for (int r = col + 1; r < 3; ++r) {
      double f = m[r][col] / m[col][col];
      for (int k = col; k < 3; ++k) m[r][k] -= f * m[col][k];
      v[r] -= f * v[col];
    }
  }
  for (int r = 2; r >= 0; --r) {
    double s = v[r];
    for (int k = r + 1; k < 3; ++k) s -= m[r][k] * d[k];
    d[r] = s / m[r][r];
  }
  return std::isfinite(d[0]) && std::isfinite(d[1]) && std::isfinite(d[2]);
}

// Levenberg-Marquardt from `p`, keeping 0 <= c < c_max.
Params refine(Params p, const std::vector<double>& x, const std::vector<double>& y, double c_max) {
  double f = sum_sq(p, x, y);
  double lambda = 1e-3;
  for (int iter = 0; iter < 500 && f > 0; ++iter) {
    double jtj[3][3] = {}, jtr[3] = {};
    for (size_t i = 0; i < x.size(); ++i) {
      double e = std::exp(p.ln_a + p.b * x[i]);
      double r = e + p.c - y[i];
      double g[3] = {e, e * x[i], 1.0};
      for (int a = 0; a < 3; ++a) {
        jtr[a] += g[a] * r;
        for (int b = 0; b < 3; ++b) jtj[a][b] += g[a] * g[b];
      }
    }
    bool improved = false;
    while (!improved && lambda < 1e16) {
      double m[3][3], v[3], d[3];
      for (int a = 0; a < 3; ++a) {
        for (int b = 0; b < 3; ++b) m[a][b] = jtj[a][b];
        m[a][a] += lambda * (jtj[a][a] > 0 ? jtj[a][a] : 1.0);
        v[a] = -jtr[a];
      }
      if (solve3(m, v, d)) {
        Params q{p.ln_a + d[0], p.b + d[1], std::max(0.0, p.c + d[2])};
        if (q.c < c_max) {
          double fq = sum_sq(q, x, y);
          if (fq < f) {
            improved = true;
            bool converged = f - fq <= 1e-15 * f;
            p = q;
            f = fq;
            lambda = std::max(lambda * 0.1, 1e-12);
            if (converged) return p;
          }
        }
      }
      if (!improved) lambda *= 10;
    }
    if (!improved) break;
  }
  return p;
}

}  // namespace

double PowerLaw::loss(double compute) const { return a * std::pow(compute, b) + c; }

double PowerLaw::compute_for(double l) const {
  if (!(l > c) || !(a > 0) || !(b < 0)) return kNaN;
  return std::pow((l - c) / a, 1.0 / b);
}

PowerLawFit fit_power_law(const std::vector<double>& compute, const std::vector<double>& loss) {
  MT_CHECK(compute.size() == loss.size(), "fit_power_law: ", compute.size(), " budgets for ", loss.size(),
           " losses");
  PowerLawFit fit;
  fit.points = int(compute.size());
  for (size_t i = 0; i < compute.size(); ++i) {
    if (!(compute[i] > 0) || !std::isfinite(compute[i]) || !(loss[i] > 0) || !std::isfinite(loss[i])) {
      fit.why = str("point ", i + 1, " (C ", compute[i], ", L ", loss[i], ") is not positive and finite");
      return fit;
    }
  }
  std::vector<double> sorted = compute;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) fit.budgets += i == 0 || sorted[i] > sorted[i - 1] * 1.01;
  if (fit.budgets < 3) {
    fit.why = str("needs dense runs at 3 or more compute budgets (has ", fit.budgets, ")");
    return fit;
  }
  const size_t n = compute.size();
  double log_c0 = 0;
  for (double c : compute) log_c0 += std::log(c) / double(n);
  std::vector<double> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = std::log(compute[i]) - log_c0;
  const double l_min = *std::min_element(loss.begin(), loss.end());

  // The grid: c from 0 to just under min L (log-spaced in min L - c); a straight line in log space.
  const int grid = 600;
  Params best;
  double best_f = std::numeric_limits<double>::infinity();
  double xm = 0;
  for (double v : x) xm += v / double(n);
  for (int k = 0; k < grid; ++k) {
    double c = l_min * (1.0 - std::pow(10.0, -6.0 * k / (grid - 1)));
    double ym = 0;
    std::vector<double> y(n);
    for (size_t i = 0; i < n; ++i) {
      y[i] = std::log(loss[i] - c);
      ym += y[i] / double(n);
    }
    double sxy = 0, sxx = 0;
    for (size_t i = 0; i < n; ++i) {
      sxy += (x[i] - xm) * (y[i] - ym);
      sxx += (x[i] - xm) * (x[i] - xm);
    }
    Params p{0, sxy / sxx, c};
    p.ln_a = ym - p.b * xm;
    if (!(p.b < 0)) continue;
    double f = sum_sq(p, x, loss);
    if (f < best_f) {
      best_f = f;
      best = p;
    }
  }
  if (!std::isfinite(best_f)) {
    fit.why = "the dense runs' loss does not fall with compute";
    return fit;
  }
  Params p = refine(best, x, loss, l_min);
  if (!(p.b < 0)) {
    fit.why = str("the dense runs' loss does not fall with compute (fitted exponent ", p.b, ")");
    return fit;
  }
  fit.ok = true;
  fit.law.b = p.b;
  fit.law.c = p.c;
  fit.law.a = std::exp(p.ln_a - p.b * log_c0);
  fit.rms = std::sqrt(sum_sq(p, x, loss) / double(n));
  return fit;
}

double efficiency_leverage(const PowerLaw& dense, double loss, double compute) {
  if (!(compute > 0)) return kNaN;
  return dense.compute_for(loss) / compute;
}

}  // namespace mt
