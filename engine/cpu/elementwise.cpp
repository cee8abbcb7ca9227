// Why: the elementwise ops, the reductions the optimizer needs (gradient norm, loss sum) and AdamW (over
// runs of tensors with their own weight decay) on the CPU. The reductions are in double over fixed chunks with fixed lanes, combined in chunk order, so
// the gradient norm (and with it clipping and every later step) has the same bits on every run, for
// any thread count and any buffer alignment.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/core/check.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/cpu/parallel.h"

namespace mt {

namespace {

constexpr size_t kSumChunk = size_t(1) << 15;  // elements per partial sum
constexpr int kLanes = 8;                      // independent accumulators within a chunk

enum class Reduce { Sum, SumOfSquares };

template <typename P>
double reduce(const P* x, size_t n, Reduce what) {
  const size_t chunks = (n + kSumChunk - 1) / kSumChunk;
  std::vector<double> partial(chunks);
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (size_t ch = 0; ch < chunks; ++ch) {
    const size_t begin = ch * kSumChunk, end = std::min(n, begin + kSumChunk);
    double lane[kLanes] = {};
    size_t i = begin;
    // Element i always goes to lane (i - begin) % kLanes: the order of the additions is fixed by n.
    for (; i + kLanes <= end; i += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        const double v = double(x[i + l]);
        lane[l] += what == Reduce::Sum ? v : v * v;
      }
    for (int l = 0; i < end; ++i, ++l) {
      const double v = double(x[i]);
      lane[l] += what == Reduce::Sum ? v : v * v;
    }
    double s = 0;
    for (int l = 0; l < kLanes; ++l) s += lane[l];
    partial[ch] = s;
  }
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace

template <typename T>
void CpuOps<T>::add_inplace(T* x, const T* y, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > cpu::kParallelMin)
  for (size_t i = 0; i < n; ++i) x[i] += y[i];
}

template <typename T>
void CpuOps<T>::to_compute(T* out, const acc_t<T>* in, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > cpu::kParallelMin)
  for (size_t i = 0; i < n; ++i) out[i] = T(in[i]);
}

template <typename T>
double CpuOps<T>::sum_squares(const acc_t<T>* x, size_t n) {
  return reduce(x, n, Reduce::SumOfSquares);
}

template <typename T>
void CpuOps<T>::sum_squares_groups(double* sums_host, int n_groups, const SquaresSpan<acc_t<T>>* spans_host,
                                   int n_spans) {
  std::fill(sums_host, sums_host + n_groups, 0.0);
  for (int i = 0; i < n_spans; ++i) {
    const SquaresSpan<P>& sp = spans_host[i];
    MT_CHECK(sp.group >= 0 && sp.group < n_groups, "sum_squares_groups: group ", sp.group, " of ", n_groups);
    sums_host[sp.group] += reduce(sp.data, sp.n, Reduce::SumOfSquares);
  }
}

template <typename T>
double CpuOps<T>::sum(const acc_t<T>* x, size_t n) {
  return reduce(x, n, Reduce::Sum);
}

// g = grad * grad_scale; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; with the bias corrections
// mhat = m / (1 - b1^t), vhat = v / (1 - b2^t): param -= lr (mhat / (sqrt(vhat) + eps) + wd param).
template <typename T>
void CpuOps<T>::adamw(acc_t<T>* param, const acc_t<T>* grad, acc_t<T>* m, acc_t<T>* v, size_t n,
                      const AdamWArgs& args) {
  MT_CHECK(args.step >= 1, "adamw step ", args.step, " (1-based)");
  const P b1 = P(args.beta1), b2 = P(args.beta2), lr = P(args.lr), eps = P(args.eps), wd = P(args.weight_decay),
          gs = P(args.grad_scale);
  const P bc1 = P(1.0 - std::pow(double(args.beta1), args.step));
  const P bc2 = P(1.0 - std::pow(double(args.beta2), args.step));
  // [begin, end) with weight decay `decay`.
  auto update = [&](size_t begin, size_t end, P decay) {
#pragma omp parallel for simd schedule(static) if (end - begin > cpu::kParallelMin)
    for (size_t i = begin; i < end; ++i) {
      const P g = grad[i] * gs;
      const P mi = b1 * m[i] + (P(1) - b1) * g;
      const P vi = b2 * v[i] + (P(1) - b2) * g * g;
      m[i] = mi;
      v[i] = vi;
      param[i] -= lr * ((mi / bc1) / (std::sqrt(vi / bc2) + eps) + decay * param[i]);
    }
  };
  if (!args.runs) return update(0, n, wd);
  size_t begin = 0;
  for (int r = 0; r < args.n_runs; ++r) {
    MT_CHECK(args.runs[r].end >= begin && args.runs[r].end <= n, "adamw run ", r, " ends at ", args.runs[r].end);
    update(begin, args.runs[r].end, P(args.runs[r].weight_decay));
    begin = args.runs[r].end;
  }
  MT_CHECK(begin == n, "adamw runs cover ", begin, " of ", n, " elements");
}

MT_CPU_INSTANTIATE(MT_OPS_ELEMENTWISE)

}  // namespace mt
