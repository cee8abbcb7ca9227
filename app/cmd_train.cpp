// Why: `moetrain train CONFIG --out DIR`: one run, on this process or on every rank of an mpirun /
// srun job (the layout comes from parallel.tp / parallel.ep and the world size). --resume auto
// continues from the newest complete checkpoint in DIR (a fresh start if there is none), so a requeued
// Slurm job simply runs the same command again.
#include <CLI/CLI.hpp>
#include <iostream>

#include "app/command.h"
#include "app/common.h"
#include "app/run_backend.h"
#include "engine/core/check.h"
#include "engine/run/run_dir.h"
#include "engine/run/trainer.h"

namespace mt::app {
namespace {

struct TrainArgs {
  RunArgs run;
  std::string out;
  std::string resume;
  int64_t stop_after = -1;
  bool override_schedule = false;
};

void run_train(const TrainArgs& a) {
  install_stop_signals();  // first: a SIGTERM during start-up still ends in a checkpoint, not exit 143
  RunConfig cfg = load_run(a.run.config, a.run.overrides);
  TrainOptions opts;
  opts.out_dir = a.out;
  if (a.resume.empty()) {
    opts.resume = ResumeMode::Fresh;
  } else if (a.resume == "auto") {
    opts.resume = ResumeMode::Auto;
  } else {
    opts.resume = ResumeMode::From;
    opts.resume_from = a.resume;
  }
  opts.stop_after = a.stop_after;
  opts.override_schedule = a.override_schedule;
  TrainResult r = with_backend(a.run, cfg.parallel, [&](auto& ops, const ProcessGrid& grid, const BackendInfo& info) {
    opts.peak_flops = info.peak_flops;
    opts.device_name = info.name;
    opts.between_steps = info.between_steps;
    return train(cfg, opts, ops, grid);
  }, cfg.model.attention_impl);
  check_stdout();  // a log lost to a full disk is a failure, not exit 0
  if (r.outcome == TrainOutcome::Interrupted) {
    // Preempted (SIGTERM / SIGINT): a checkpoint was written; exit 3 so that a caller can tell.
    std::exit(3);
  }
}

RegisterCommand reg("train", 20, [](CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  auto* sub = app.add_subcommand("train", "Train a run manifest (single process, or every rank of an MPI job)");
  sub->add_option("config", args->run.config, "run manifest (JSON)")->required()->check(CLI::ExistingFile);
  sub->add_option("--out", args->out, "run folder: config.json, metrics.jsonl, summary.json, checkpoints/")
      ->required();
  sub->add_option("--resume", args->resume,
                  "auto: continue from the newest complete checkpoint in --out (fresh if none); or a checkpoint "
                  "or run folder to start from");
  sub->add_option("--stop-after", args->stop_after,
                  "stop after this many steps with a checkpoint, as if preempted (the schedule is unchanged)")
      ->check(CLI::PositiveNumber);
  sub->add_flag("--override-schedule", args->override_schedule,
               "with --resume: allow train.lr, train.min_lr and train.warmup_iters to differ from the checkpoint's "
               "run (each change is logged), e.g. to resume a diverged run with a lower lr");
  add_run_options(sub, &args->run);
  sub->callback([args] { run_train(*args); });
});

}  // namespace
}  // namespace mt::app
