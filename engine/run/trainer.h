// Why: the training loop of `moetrain train`: data, micro-batch accumulation, data-parallel gradient
// reduction, clipping, AdamW on the cosine schedule, evaluation (BPC), logging, checkpoints, and
// stopping and resuming exactly (--stop-after, SIGTERM / SIGINT, --resume auto). Written once against
// Ops<T>; the CPU instantiates it for float (engine/run/trainer.cpp), the CUDA backend for float and bf16.
//
// Outputs in --out DIR (DESIGN.md "Output of a run"): config.json (the resolved manifest), metrics.jsonl
// (one JSON object per logged step; evaluation lines add val_loss and val_bpc), summary.json (at the
// end: final val_bpc and the plan's N, Na, ra, M, C, D, D-hat, epochs), checkpoints/step_XXXXXXXX/.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "comm/grid.h"
#include "engine/core/stop.h"  // install_stop_signals(): SIGTERM / SIGINT checkpoint and stop the loop
#include "engine/run/config.h"
#include "engine/ops/ops.h"

namespace mt {

enum class ResumeMode { Fresh, Auto, From };

struct TrainOptions {
  std::string out_dir;
  ResumeMode resume = ResumeMode::Fresh;
  std::string resume_from;     // ResumeMode::From: a checkpoint folder or a run folder
  int64_t stop_after = -1;     // stop after this step (1-based count of steps done), with a checkpoint
  bool override_schedule = false;  // a resume may change train.lr, min_lr and warmup_iters (logged)
  double peak_flops = 0;       // per device, for MFU (0: not reported)
  std::string device_name;     // for the log
  // Called after each optimizer step (the CPU backend re-divides its cores there); a non-empty return
  // is a line for the log.
  std::function<std::string()> between_steps;
  // Asked on every rank after each optimizer step whether this rank wants to stop (with a checkpoint);
  // the answers are summed over the world, so every rank stops at the same step. Default: SIGTERM or
  // SIGINT arrived (engine/core/stop.h).
  std::function<bool()> should_stop = [] { return stop_requested(); };
};

enum class TrainOutcome { Finished, Stopped, Interrupted };

struct TrainResult {
  TrainOutcome outcome = TrainOutcome::Finished;
  int64_t step = 0;            // steps done
  double val_bpc = -1;         // final (Finished) or -1
};

template <typename T>
TrainResult train(const RunConfig& cfg, const TrainOptions& opts, Ops<T>& ops, const ProcessGrid& grid);

// Evaluates a checkpoint on the val split of cfg: {val_loss, val_bpc, val_bits_per_byte, tokens, ...}.
template <typename T>
json evaluate_checkpoint(const RunConfig& cfg, const std::string& ckpt_dir, Ops<T>& ops, const ProcessGrid& grid);

}  // namespace mt
