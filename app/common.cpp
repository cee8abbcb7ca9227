// Why: see common.h.
#include "app/common.h"

#include <CLI/CLI.hpp>
#include <filesystem>

#include "engine/core/check.h"
#include "engine/run/checkpoint.h"

namespace fs = std::filesystem;

namespace mt::app {

void add_run_options(CLI::App* sub, RunArgs* args) {
  sub->add_option("--set", args->overrides, "override a manifest key: --set a.b.c=value (repeatable)");
  sub->add_option("--device", args->device, "cpu, cuda or auto (cuda when a GPU is present)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  sub->add_option("--precision", args->precision, "fp32, bf16 or auto (bf16 on cuda, fp32 on cpu)")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
}

RunConfig load_run(const std::string& path, const std::vector<std::string>& overrides) {
  Manifest m = load_manifest(path, overrides);
  MT_INPUT(!m.is_sweep, path, ": this is a sweep manifest; run it with `moetrain sweep ", path, " --out DIR`");
  RunConfig cfg = parse_run(m.sweep.runs[0].manifest, path, m.sweep.base_dir);
  if (cfg.name.empty()) cfg.name = m.sweep.runs[0].name;
  return cfg;
}

std::string resolve_checkpoint(const std::string& path) {
  MT_INPUT(fs::exists(path), path, ": no such checkpoint or run folder");
  if (fs::exists(fs::path(path) / "state.json")) return path;
  std::string latest = latest_checkpoint(path);
  MT_INPUT(!latest.empty(), path, ": no complete checkpoint here (expected DIR/checkpoints/step_*/state.json)");
  return latest;
}

RunConfig checkpoint_run_config(const std::string& ckpt, const RunArgs& args) {
  if (!args.config.empty()) return load_run(args.config, args.overrides);
  json st = verify_checkpoint(ckpt);
  MT_INPUT(st.contains("config"), ckpt, "/state.json has no config: name a manifest (CONFIG --checkpoint ...)");
  json m = st["config"];
  for (const auto& o : args.overrides) apply_override(m, o);
  return parse_run(m, ckpt + "/state.json config", "");
}

std::string run_dir_of_checkpoint(const std::string& ckpt_dir) {
  return fs::path(ckpt_dir).lexically_normal().parent_path().parent_path().string();
}

}  // namespace mt::app
