// Why: `moetrain eval --checkpoint DIR`: the val loss and BPC of a checkpoint (or of a run folder's
// newest one) on the val split its run was trained with, or on another manifest's (CONFIG). Runs on
// one process or on every rank of an MPI job, at any layout (checkpoints reshard on load).
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "app/command.h"
#include "app/common.h"
#include "app/run_backend.h"
#include "engine/core/check.h"
#include "engine/run/checkpoint.h"
#include "engine/run/trainer.h"

namespace mt::app {
namespace {

struct EvalArgs {
  RunArgs run;
  std::string checkpoint;
  bool as_json = false;
};

void run_eval(const EvalArgs& a) {
  const std::string ckpt = resolve_checkpoint(a.checkpoint);
  const RunConfig cfg = checkpoint_run_config(ckpt, a.run);
  json r = with_backend(a.run, cfg.parallel, [&](auto& ops, const ProcessGrid& grid, const BackendInfo&) {
    json out = evaluate_checkpoint(cfg, ckpt, ops, grid);
    out["root"] = grid.is_root();
    return out;
  }, cfg.model.attention_impl);
  if (!r["root"].get<bool>()) return;
  r.erase("root");
  MT_INPUT(std::isfinite(r["val_loss"].get<double>()), ckpt, ": the val loss is ", r["val_loss"].dump(),
           " (the checkpoint's weights are not usable)");
  if (a.as_json) {
    std::printf("%s\n", r.dump(2).c_str());
    return;
  }
  std::printf("%s: val loss %.4f nats/token over %lld tokens", ckpt.c_str(), r["val_loss"].get<double>(),
              (long long)r["tokens"].get<int64_t>());
  if (r["val_bpc"].is_number())
    std::printf(", val bpc %.4f (%.4f bits per byte)\n", r["val_bpc"].get<double>(),
                r["val_bits_per_byte"].get<double>());
  else
    std::printf(" (no BPC: the dataset's tokenizer is unknown)\n");
}

RegisterCommand reg("eval", 40, [](CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  auto* sub = app.add_subcommand("eval", "Validation loss and BPC of a checkpoint");
  sub->add_option("config", args->run.config,
                  "run manifest whose data.val and model to use (default: the checkpoint's own)")
      ->check(CLI::ExistingFile);
  sub->add_option("--checkpoint", args->checkpoint, "a checkpoint folder, or a run folder (its newest checkpoint)")
      ->required();
  sub->add_flag("--json", args->as_json, "print a JSON object");
  add_run_options(sub, &args->run);
  sub->callback([args] { run_eval(*args); });
});

}  // namespace
}  // namespace mt::app
