// Why: `moetrain export --checkpoint DIR --out model.safetensors`: one file of full fp32 tensors with
// DESIGN.md names from a checkpoint written at any layout (sharded or not).
#include <CLI/CLI.hpp>
#include <iostream>

#include "app/command.h"
#include "app/common.h"
#include "engine/run/checkpoint.h"

namespace mt::app {
namespace {

struct ExportArgs {
  std::string checkpoint, out;
};

RegisterCommand reg("export", 70, [](CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  auto* sub = app.add_subcommand("export", "Write a checkpoint's full weights as one safetensors file");
  sub->add_option("--checkpoint", args->checkpoint, "a checkpoint folder, or a run folder (its newest checkpoint)")
      ->required();
  sub->add_option("--out", args->out, "output safetensors file")->required();
  sub->callback([args] {
    std::string ckpt = resolve_checkpoint(args->checkpoint);
    export_checkpoint(ckpt, args->out);
    std::cout << "exported " << ckpt << " -> " << args->out << "\n";
  });
});

}  // namespace
}  // namespace mt::app
