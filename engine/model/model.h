// Why: the transformer of DESIGN.md "The model", forward and backward by hand, written once against
// Ops<T> so that the CPU and CUDA backends run the same code. One Model holds this rank's slice of
// the parameters (dense and expert buffers), their gradients, and an activation arena sized for one
// micro-batch. Tensor parallelism (heads, FFN hidden, expert hidden, shared hidden split over tp; the
// embedding and LM head replicated) and expert parallelism (moe.h) are inside forward_backward;
// data-parallel gradient reduction is the trainer's, signalled through GradReadyHook.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "comm/grid.h"
#include "engine/model/model_config.h"
#include "engine/ops/ops.h"
#include "engine/model/params.h"
#include "engine/model/profile.h"

namespace mt {

enum class ParamGroup { Dense, Expert };

// How the MoE layers choose their experts: the router's top-K (Natural), or a round robin
// (ForceBalance: token t's k-th choice is expert (t K + k) mod E, so that every expert gets the same
// load; the gates stay the router's top-K probabilities). ForceBalance is for `moetrain bench
// --force-balance` (the speed of perfectly balanced experts), not for training.
enum class MoeRouting { Natural, ForceBalance };

// One micro-batch's numbers. forward_backward fills loss_sum and tokens; the MoE numbers stay on the
// device until Model::read_moe_stats fills them (once per step, one device-to-host copy).
struct MicroBatchStats {
  double loss_sum = 0;          // sum over target tokens of the cross-entropy (nats)
  int64_t tokens = 0;           // target tokens
  double balance_loss = 0;      // sum over MoE layers of E * sum_i f_i p_i (before the coefficient)
  double z_loss = 0;            // sum over MoE layers of mean_t logsumexp_t^2 (before the coefficient)
  std::vector<std::vector<int64_t>> tokens_per_expert;  // [MoE layer][E]: choices before any drop
  int64_t dropped = 0;          // choices dropped by the capacity factor
  std::vector<int64_t> layer_dropped;  // [MoE layer]: choices dropped by the capacity factor
  std::vector<double> router_entropy;  // [MoE layer]: mean over tokens of -sum_e p ln p of the router (nats)
};

// The trainer's hook into the backward: once the backward has passed a layer, the gradients of a
// buffer from `offset` to its end are final for this micro-batch (buffers are in forward order).
class GradReadyHook {
 public:
  virtual ~GradReadyHook() = default;
  virtual void ready(ParamGroup group, size_t offset) = 0;
};

template <typename T>
class Model {
 public:
  using P = acc_t<T>;

  // micro_batch: sequences per micro-batch on this rank (the arena is sized for it).
  Model(const ModelConfig& cfg, int micro_batch, const ProcessGrid& grid, Ops<T>& ops);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const;
  const ParamLayout& layout() const;
  int micro_batch() const;

  // Master parameters and gradients (device memory, type P), one buffer per group.
  P* params(ParamGroup g);
  P* grads(ParamGroup g);
  size_t numel(ParamGroup g) const;

  // Seeded initialisation (params.h), identical for every layout.
  void init_params(uint64_t seed);
  void zero_grads();
  // After the optimizer has changed the master weights: refresh the compute copies (bf16).
  void refresh_compute_weights();

  // One micro-batch: windows_host holds n_seqs x (S + 1) tokens (host); inputs are tokens 0..S-1 and
  // targets 1..S of each window. Forward, loss, and backward with gradients ACCUMULATED into grads().
  // The micro-batch's loss is scaled by loss_scale in the gradient (e.g. 1 / micro-batches per step).
  MicroBatchStats forward_backward(const int32_t* windows_host, int n_seqs, float loss_scale,
                                   GradReadyHook* hook);

  // The MoE numbers (balance and z losses, tokens per expert, drops) of the last n calls of
  // forward_backward, the calls since the previous read, into stats[0..n) in call order; one
  // device-to-host copy (none without MoE layers). A model with MoE layers keeps the numbers of every
  // call until they are read, so a training loop reads them once per step.
  void read_moe_stats(MicroBatchStats* stats, int n);

  // Aux-loss-free balancing (MoeConfig::balance bias or aux+bias; otherwise these do nothing and the
  // bias is empty): after an optimizer step, each MoE layer's expert bias moves by bias_rate *
  // sign(mean load - load_e), `load` (MoE layer * E + expert) being the step's choices per expert summed
  // over every micro-batch and every dp rank (the trainer's StepStats::expert_load), so that every rank
  // makes the same update. One host-to-device copy.
  void update_expert_bias(const std::vector<double>& load);
  // The bias (MoE layer * E + expert; empty without one), for checkpoints, and its restore (exact).
  std::vector<double> expert_bias() const;
  void set_expert_bias(const std::vector<double>& bias);

  // How the MoE layers choose their experts (MoeRouting; Natural at construction).
  void set_routing(MoeRouting routing);

  // Forward only: the summed cross-entropy (nats) over the targets of n_seqs windows.
  double forward_nll(const int32_t* windows_host, int n_seqs);

  // Forward only: the V logits (as float, on the host) after input token `position` of window 0.
  void forward_logits(const int32_t* windows_host, int n_seqs, int position, float* logits_host);

  Profiler& profiler();
  // Bytes of the activation arena and of the parameter / gradient buffers.
  size_t activation_bytes() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

extern template class Model<float>;
extern template class Model<double>;

}  // namespace mt
