// Why: one optimizer step, written once for `moetrain train` (engine/run/trainer_impl.h) and `moetrain
// bench` (app/cmd_bench.cpp), so that the step a benchmark times is the step a run trains with:
//   the rank's B/dp sequences run as B/(dp m) micro-batches of m (split_batch: a layout that does not
//   divide the batch is an error, never clamped) whose gradients accumulate, each micro-batch's loss
//   scaled by 1/(micro-batches x dp) so that the dp sum is the mean over the global batch; the
//   bucketed dp / edp gradient all-reduce (GradSync) starts during the last micro-batch's backward;
//   the MoE numbers of all micro-batches are read from the device at once (Model::read_moe_stats);
//   then the step statistics are summed over dp, the global gradient norm taken, clipped, and AdamW
//   applied at the caller's lr; the expert bias (model.moe.balance bias / aux+bias) follows the step's
//   load; the device is synchronised at the end (a step's time is its work).
// StepStats holds a step's numbers (the metrics line's loss, balance and z losses, expert load); new
// per-step statistics go there and in StepStats::add / reduce_over_dp.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/grid.h"
#include "engine/core/check.h"
#include "engine/core/json.h"
#include "engine/model/grad_sync.h"
#include "engine/model/model.h"
#include "engine/model/optim.h"
#include "engine/run/config.h"

namespace mt {

// B / dp sequences per rank in micro-batches of m (train.micro_batch_size, default the whole share).
struct BatchSplit {
  int local = 0;    // sequences per rank per step
  int micro = 0;    // sequences per micro-batch
  int n_micro = 0;  // micro-batches per step
};
// InputError (naming train.batch_size / train.micro_batch_size) unless dp divides the batch and the
// micro-batch divides the rank's share (and model.moe.balance_group divides the micro-batch).
BatchSplit split_batch(const RunConfig& cfg, int batch_size, int dp);

// One optimizer step's numbers: sums over this rank's micro-batches, then (reduce_over_dp) over dp.
struct StepStats {
  double loss_sum = 0;              // cross-entropy summed over target tokens (nats)
  double tokens = 0;                // target tokens
  double balance_loss = 0;          // mean over micro-batches (and over dp after the reduction)
  double z_loss = 0;                // likewise
  std::vector<double> expert_load;  // [MoE layer * E + expert]: choices before any drop
  double dropped = 0;               // choices dropped by the capacity factor
  std::vector<double> layer_dropped;  // [MoE layer]: choices dropped by the capacity factor
  std::vector<double> router_entropy;  // [MoE layer]: mean over tokens (and over dp after the reduction)
  double lr = 0;                    // the lr of this step
  double grad_norm = 0;             // global, before clipping
  double seconds = 0;               // wall time of the step on this rank

  void add(const MicroBatchStats& mb, int n_micro);
  void reduce_over_dp(const ProcessGrid& grid);  // sums; balance and z losses become means over dp
  double loss() const { return loss_sum / tokens; }
  json expert_load_json(int n_experts) const;  // [{layer, min, max, mean}] over the experts of each layer
};

// A step whose loss or gradient norm is not finite, found before the update (the weights are untouched).
class NonFiniteStep : public Error {
 public:
  using Error::Error;
};

// The bucket size of the gradient all-reduce.
constexpr size_t kGradBucketBytes = size_t(16) << 20;

template <typename T>
class StepRunner {
 public:
  using P = acc_t<T>;

  // model's micro-batch must be split.micro; dev is the model's device. The runner owns the gradient
  // sync (none when dp and edp are 1).
  StepRunner(Model<T>& model, Optimizer<T>& optim, const ProcessGrid& grid, const BatchSplit& split, Device& dev)
      : model_(model), optim_(optim), grid_(grid), split_(split), dev_(dev) {
    MT_CHECK(model.micro_batch() == split.micro, "the model's micro-batch ", model.micro_batch(),
             " is not the split's ", split.micro);
    if (grid.dp_size > 1 || grid.edp_size > 1) {
      sync_ = std::make_unique<GradSync<P>>(
          typename GradSync<P>::Buffer{model.grads(ParamGroup::Dense), &model.layout().dense, &grid.dp()},
          typename GradSync<P>::Buffer{model.grads(ParamGroup::Expert), &model.layout().expert, &grid.edp()},
          dev.space(), kGradBucketBytes);
    }
  }

  // One optimizer step on batch_host, this rank's split.local windows of seq_len + 1 tokens (host), at
  // 1-based step `step` with learning rate lr. Returns the statistics summed over dp (seconds unset).
  // Throws NonFiniteStep before the update when the loss or the gradient norm is not finite.
  StepStats run(const int32_t* batch_host, int64_t step, double lr) {
    StepStats s;
    s.lr = lr;
    model_.zero_grads();
    const size_t window = size_t(model_.config().seq_len) + 1;
    const float loss_scale = 1.0f / float(split_.n_micro * grid_.dp_size);
    std::vector<MicroBatchStats> micro(split_.n_micro);
    for (int mb = 0; mb < split_.n_micro; ++mb) {
      GradReadyHook* hook = mb == split_.n_micro - 1 ? sync_.get() : nullptr;
      micro[mb] = model_.forward_backward(batch_host + size_t(mb) * size_t(split_.micro) * window, split_.micro,
                                          loss_scale, hook);
    }
    model_.read_moe_stats(micro.data(), split_.n_micro);  // the MoE numbers of the step, in one read
    for (const MicroBatchStats& mb : micro) s.add(mb, split_.n_micro);
    Profiler& prof = model_.profiler();
    if (sync_) {
      Profiler::Scope ps(prof, OpFamily::GradComm);
      sync_->finish();
    }
    s.reduce_over_dp(grid_);
    {
      Profiler::Scope ps(prof, OpFamily::Optimizer);
      s.grad_norm = optim_.grad_norm();
      if (!std::isfinite(s.loss()) || !std::isfinite(s.grad_norm))
        throw NonFiniteStep(str("the loss is ", s.loss(), " and the gradient norm ", s.grad_norm, " at step ", step));
      optim_.update(int(step), lr, s.grad_norm);
    }
    // Aux-loss-free balancing: the expert bias follows the step's load over every micro-batch and dp
    // rank, which reduce_over_dp has already summed (no collective of its own).
    if (model_.config().moe.uses_bias()) model_.update_expert_bias(s.expert_load);
    dev_.synchronize();
    return s;
  }

  // How the step reduces the gradients: "the gradient all-reduce (dense over dp 2, experts over edp 2;
  // 16 MiB buckets from the last micro-batch's backward)", or "no gradient all-reduce (dp 1)".
  std::string describe_sync() const {
    if (!sync_) return "no gradient all-reduce (dp 1)";
    std::string groups = str("dense over dp ", grid_.dp_size);
    if (model_.numel(ParamGroup::Expert) > 0)
      groups += grid_.edp_size > 1 ? str(", experts over edp ", grid_.edp_size)
                                   : std::string(", none for the experts (edp 1: one copy of each)");
    return str("the gradient all-reduce (", groups, "; ", kGradBucketBytes >> 20,
               " MiB buckets from the last micro-batch's backward)");
  }
  bool syncs_gradients() const { return sync_ != nullptr; }

 private:
  Model<T>& model_;
  Optimizer<T>& optim_;
  const ProcessGrid& grid_;
  const BatchSplit split_;
  Device& dev_;
  std::unique_ptr<GradSync<P>> sync_;
};

}  // namespace mt
