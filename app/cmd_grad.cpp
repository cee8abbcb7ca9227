// Why: `moetrain grad CONFIG --checkpoint W.safetensors --tokens SHARD --out G.safetensors`: the loss of
// one micro-batch and every parameter's gradient under the parameter's own name, so that anyone can
// check our hand-written backward against an autograd framework. Sequence b of the micro-batch is
// tokens [b (S+1), (b+1) (S+1)) of an llm.c-layout shard. --dtype f64 computes in double precision.
#include <CLI/CLI.hpp>
#include <iostream>

#include "app/command.h"
#include "app/common.h"
#include "comm/grid.h"
#include "data/shards.h"
#include "engine/core/check.h"
#include "engine/run/checkpoint.h"
#include "engine/run/weights.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/model/model.h"

namespace mt::app {
namespace {

struct GradArgs {
  std::string config, checkpoint, tokens, out, dtype = "f32";
  std::vector<std::string> overrides;
};

template <typename T>
void compute(const RunConfig& cfg, const GradArgs& a, int micro) {
  const int S = cfg.model.seq_len;
  auto ds = data::open_dataset(a.tokens, data::Split::Train, cfg.model.vocab_size);
  MT_INPUT(!ds.shards.empty() && ds.shards[0].tokens >= int64_t(micro) * (S + 1), a.tokens, ": holds ",
           ds.shards.empty() ? 0 : ds.shards[0].tokens, " tokens; a micro-batch of ", micro, " x (seq_len + 1 = ",
           S + 1, ") needs ", int64_t(micro) * (S + 1));
  std::vector<int32_t> windows(size_t(micro) * (S + 1));
  ds.read(0, 0, int64_t(windows.size()), windows.data());

  CpuOps<T> ops;
  auto grid = make_grid(1, 1, ops.device());
  Model<T> model(cfg.model, micro, *grid, ops);
  load_model_weights(model, a.checkpoint, ops.device());
  model.zero_grads();
  MicroBatchStats s = model.forward_backward(windows.data(), micro, 1.0f, nullptr);
  model.read_moe_stats(&s, 1);
  const double ce = s.loss_sum / double(s.tokens);
  const double loss = ce + cfg.model.moe.trained_balance_coef() * s.balance_loss + cfg.model.moe.z_loss_coef * s.z_loss;

  std::vector<safetensors::TensorRef> refs;
  const DType dt = dtype_of<T>();
  for (auto g : {ParamGroup::Dense, ParamGroup::Expert}) {
    const ParamTable& table = g == ParamGroup::Dense ? model.layout().dense : model.layout().expert;
    for (const TensorInfo& t : table.tensors) refs.push_back({t.name, dt, t.shape, model.grads(g) + t.offset});
  }
  T loss_t = T(loss), ce_t = T(ce), bal_t = T(s.balance_loss), z_t = T(s.z_loss);
  refs.push_back({"loss", dt, {}, &loss_t});
  refs.push_back({"ce_loss", dt, {}, &ce_t});
  refs.push_back({"balance_loss", dt, {}, &bal_t});
  refs.push_back({"z_loss", dt, {}, &z_t});
  safetensors::write(a.out, refs, {{"format", "pt"}, {"micro_batch_size", std::to_string(micro)}});
  std::printf("loss %.9g (cross-entropy %.9g, balance %.6g, z %.6g) over %d x %d tokens; %zu gradients -> %s\n", loss, ce,
              s.balance_loss, s.z_loss, micro, S, refs.size() - 4, a.out.c_str());
}

void run_grad(const GradArgs& a) {
  RunConfig cfg = load_run(a.config, a.overrides);
  int micro = cfg.train.micro_batch_size > 0 ? cfg.train.micro_batch_size
                                             : (cfg.train.batch_size > 0 ? cfg.train.batch_size : 1);
  MT_INPUT(cfg.model.moe.groups_fit(micro), a.config, ": model.moe.balance_group (", cfg.model.moe.balance_group,
           ") does not divide the micro-batch of ", micro,
           " sequences");
  if (a.dtype == "f64")
    compute<double>(cfg, a, micro);
  else
    compute<float>(cfg, a, micro);
}

RegisterCommand reg("grad", 50, [](CLI::App& app) {
  auto args = std::make_shared<GradArgs>();
  auto* sub = app.add_subcommand("grad", "Loss and every parameter's gradient on one micro-batch (for checks "
                                         "against an autograd framework)");
  sub->add_option("config", args->config, "run manifest (model; train.micro_batch_size sequences)")
      ->required()->check(CLI::ExistingFile);
  sub->add_option("--checkpoint", args->checkpoint, "weights: a safetensors file (init / export) or a checkpoint folder")
      ->required()->check(CLI::ExistingPath);
  sub->add_option("--tokens", args->tokens, "llm.c-layout token shard; sequence b = tokens [b(S+1), (b+1)(S+1))")
      ->required();
  sub->add_option("--out", args->out, "output safetensors: gradients by parameter name, and scalar `loss`")->required();
  sub->add_option("--dtype", args->dtype, "compute in f32 (default) or f64")->check(CLI::IsMember({"f32", "f64"}));
  sub->add_option("--set", args->overrides, "override a manifest key (repeatable)");
  sub->callback([args] { run_grad(*args); });
});

}  // namespace
}  // namespace mt::app
