// Why: what several subcommands share: options every run-like command takes (--set, --device,
// --precision), loading a run manifest, and finding a checkpoint from a folder a user names.
#pragma once

#include <string>
#include <vector>

#include "engine/core/backend.h"
#include "engine/run/config.h"

namespace CLI {
class App;
}

namespace mt::app {

struct RunArgs {
  std::string config;
  std::vector<std::string> overrides;
  std::string device = "auto";
  std::string precision = "auto";
};

// Adds --set, --device and --precision to a subcommand.
void add_run_options(CLI::App* sub, RunArgs* args);

// Loads a single-run manifest (a sweep is an InputError pointing to `moetrain sweep`).
RunConfig load_run(const std::string& path, const std::vector<std::string>& overrides);

// A checkpoint folder from a checkpoint folder or a run folder (its newest checkpoint).
std::string resolve_checkpoint(const std::string& path);

// The run config of a checkpoint: args.config's manifest, or (none named) the run's own resolved
// manifest as saved in the checkpoint's state.json; args.overrides applied.
RunConfig checkpoint_run_config(const std::string& ckpt_dir, const RunArgs& args);

// The run folder of a checkpoint folder (DIR/checkpoints/step_X -> DIR).
std::string run_dir_of_checkpoint(const std::string& ckpt_dir);

}  // namespace mt::app
