// Why: the schedule, and the CPU instantiations of Optimizer<T>.
#include "engine/model/optim.h"

#include <cmath>

#include "engine/model/optim_impl.h"

namespace mt {

double CosineSchedule::at(int64_t step) const {
  if (warmup > 0 && step < warmup) return lr * double(step + 1) / double(warmup);
  const int64_t decay = std::max<int64_t>(1, iters - 1 - warmup);
  const double progress = std::min(1.0, double(step - warmup) / double(decay));
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace mt
