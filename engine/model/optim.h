// Why: AdamW over the flat parameter buffers, global-norm clipping and the cosine schedule of the
// paper's Table 4 recipe (warmup, cosine decay to min_lr).
//
// Weight decay is decoupled (param -= lr * wd * param) and applies to every weight matrix (attention,
// FFN, experts, shared expert, router, embedding, LM head), not to the RMSNorm weights.
// The global gradient norm counts every parameter once: tensors split over tp or ep are summed over
// those groups, tensors replicated over tp are counted once; data-parallel replicas hold the same
// reduced gradients and are not counted again.
// ZeRO-1: Adam moments are kept only for this rank's contiguous 1/dp share of each buffer (1/edp for
// the experts); after its update each rank broadcasts its share of the weights. The arithmetic per
// element is the same as without ZeRO, so the result is identical.
#pragma once

#include <cstdint>
#include <vector>

#include "comm/grid.h"
#include "engine/model/model_config.h"
#include "engine/model/model.h"

namespace mt {

// lr at a 0-based step: linear warmup over warmup_iters, then cosine from lr to min_lr at the last step.
struct CosineSchedule {
  double lr = 0, min_lr = 0;
  int64_t warmup = 0, iters = 1;
  double at(int64_t step) const;
};

enum class ZeroStage { None, Stage1 };

template <typename T>
class Optimizer {
 public:
  using P = acc_t<T>;
  Optimizer(Model<T>& model, const OptimConfig& cfg, const ProcessGrid& grid, Ops<T>& ops, ZeroStage zero);
  ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // The global L2 norm of the (already reduced) gradients.
  double grad_norm();
  // One AdamW step at 1-based `step` with learning rate lr, clipping to cfg.grad_clip when the
  // norm exceeds it. Refreshes the model's compute weights.
  void update(int step, double lr, double grad_norm);

  // This rank's share [begin, end) of a group's buffer and its moments (device, length end - begin).
  size_t share_begin(ParamGroup g) const;
  size_t share_end(ParamGroup g) const;
  P* exp_avg(ParamGroup g);
  P* exp_avg_sq(ParamGroup g);

 private:
  struct Group;
  Model<T>& model_;
  OptimConfig cfg_;
  const ProcessGrid& grid_;
  Ops<T>& ops_;
  ZeroStage zero_;
  std::vector<Group> groups_;
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;

}  // namespace mt
