// Why: `moetrain init CONFIG --out W.safetensors`: the seeded initial weights of a model, full tensors
// with DESIGN.md names, so that an outside framework can load exactly what training starts from.
#include <CLI/CLI.hpp>
#include <iostream>

#include "app/command.h"
#include "app/common.h"
#include "app/format.h"
#include "comm/grid.h"
#include "engine/run/checkpoint.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/model/model.h"
#include "engine/run/plan.h"

namespace mt::app {
namespace {

struct InitArgs {
  std::string config, out;
  std::vector<std::string> overrides;
};

void run_init(const InitArgs& a) {
  RunConfig cfg = load_run(a.config, a.overrides);
  CpuOps<float> ops;
  auto grid = make_grid(1, 1, ops.device());
  Model<float> model(cfg.model, 1, *grid, ops);
  model.init_params(cfg.train.seed);
  auto refs = table_refs(model.layout().dense, model.params(ParamGroup::Dense));
  for (auto& r : table_refs(model.layout().expert, model.params(ParamGroup::Expert))) refs.push_back(r);
  safetensors::write(a.out, refs, {{"format", "pt"}, {"seed", std::to_string(cfg.train.seed)}});
  auto counts = count_params(cfg.model);
  std::cout << "wrote " << a.out << ": " << refs.size() << " tensors, "
            << fmt_count(double(counts.total() + counts.embedding)) << " parameters (seed " << cfg.train.seed << ")\n";
}

RegisterCommand reg("init", 40, [](CLI::App& app) {
  auto args = std::make_shared<InitArgs>();
  auto* sub = app.add_subcommand("init", "Write the seeded initial weights of a model (safetensors, DESIGN.md names)");
  sub->add_option("config", args->config, "run manifest (only model and train.seed are used)")
      ->required()->check(CLI::ExistingFile);
  sub->add_option("--out", args->out, "output safetensors file")->required();
  sub->add_option("--set", args->overrides, "override a manifest key (repeatable)");
  sub->callback([args] { run_init(*args); });
});

}  // namespace
}  // namespace mt::app
