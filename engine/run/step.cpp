// Why: see step.h; the parts that do not depend on the compute type (the batch split and the step
// statistics).
#include "engine/run/step.h"

#include <algorithm>

namespace mt {

BatchSplit split_batch(const RunConfig& cfg, int batch_size, int dp) {
  BatchSplit s;
  MT_INPUT(batch_size % dp == 0, cfg.name, ": train.batch_size (", batch_size, ") does not split over ", dp,
           " data-parallel ranks");
  s.local = batch_size / dp;
  s.micro = cfg.train.micro_batch_size > 0 ? cfg.train.micro_batch_size : s.local;
  MT_INPUT(s.micro <= s.local, cfg.name, ": train.micro_batch_size (", s.micro, ") is larger than the per-rank batch (",
           batch_size, " / ", dp, " ranks = ", s.local, ")");
  MT_INPUT(s.local % s.micro == 0, cfg.name, ": train.micro_batch_size (", s.micro,
           ") does not divide the per-rank batch (", batch_size, " / ", dp, " ranks = ", s.local, ")");
  s.n_micro = s.local / s.micro;
  MT_INPUT(cfg.model.moe.groups_fit(s.micro), cfg.name, ": model.moe.balance_group (", cfg.model.moe.balance_group,
           ") does not divide the micro-batch of ",
           s.micro, " sequences per rank (train.micro_batch_size)");
  return s;
}

void StepStats::add(const MicroBatchStats& mb, int n_micro) {
  loss_sum += mb.loss_sum;
  tokens += double(mb.tokens);
  balance_loss += mb.balance_loss / n_micro;
  z_loss += mb.z_loss / n_micro;
  size_t k = 0;
  for (const auto& layer : mb.tokens_per_expert) {
    if (expert_load.size() < k + layer.size()) expert_load.resize(k + layer.size(), 0.0);
    for (int64_t c : layer) expert_load[k++] += double(c);
  }
  dropped += double(mb.dropped);
  if (layer_dropped.size() < mb.layer_dropped.size()) layer_dropped.resize(mb.layer_dropped.size(), 0.0);
  for (size_t l = 0; l < mb.layer_dropped.size(); ++l) layer_dropped[l] += double(mb.layer_dropped[l]);
  if (router_entropy.size() < mb.router_entropy.size()) router_entropy.resize(mb.router_entropy.size(), 0.0);
  for (size_t l = 0; l < mb.router_entropy.size(); ++l) router_entropy[l] += mb.router_entropy[l] / n_micro;
}

void StepStats::reduce_over_dp(const ProcessGrid& grid) {
  if (grid.dp_size == 1) return;
  std::vector<double> sums{loss_sum, tokens, balance_loss, z_loss};
  sums.insert(sums.end(), expert_load.begin(), expert_load.end());
  sums.push_back(dropped);
  sums.insert(sums.end(), layer_dropped.begin(), layer_dropped.end());
  sums.insert(sums.end(), router_entropy.begin(), router_entropy.end());
  grid.dp().allreduce_sum(sums.data(), sums.size(), DType::F64, MemSpace::Host);
  loss_sum = sums[0];
  tokens = sums[1];
  balance_loss = sums[2] / grid.dp_size;
  z_loss = sums[3] / grid.dp_size;
  size_t i = 4;
  for (double& c : expert_load) c = sums[i++];
  dropped = sums[i++];
  for (double& c : layer_dropped) c = sums[i++];
  for (double& h : router_entropy) h = sums[i++] / grid.dp_size;
}

json StepStats::expert_load_json(int n_experts) const {
  json layers = json::array();
  for (size_t l = 0; l * size_t(n_experts) < expert_load.size(); ++l) {
    double mn = 1e300, mx = 0, sum = 0;
    for (int e = 0; e < n_experts; ++e) {
      const double c = expert_load[l * size_t(n_experts) + size_t(e)];
      mn = std::min(mn, c);
      mx = std::max(mx, c);
      sum += c;
    }
    layers.push_back({{"layer", l}, {"min", mn}, {"max", mx}, {"mean", sum / n_experts}});
  }
  return layers;
}

}  // namespace mt
