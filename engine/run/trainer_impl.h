// Why: the body of train<T> (the Trainer class, one method per step of a run) and evaluate_checkpoint<T>
// (engine/run/trainer.h), instantiated for the CPU in engine/run/trainer.cpp and for the GPU in cuda/.
// One step of the loop (Trainer::optimizer_step): the loader gives this rank its B/dp sequences of the
// global batch and the StepRunner (engine/run/step.h, the step `moetrain bench` times too) runs them:
// micro-batches with accumulation, the bucketed dp reduction, the global gradient norm, clipping and
// AdamW at the cosine schedule's lr. Logged loss, balance loss and expert load are summed over dp.
// Stopping (--stop-after, SIGTERM / SIGINT) checkpoints at a step boundary; the flag is agreed on by
// every rank (a sum over the world each step) so that all ranks stop at the same step. A resumed run
// restores parameters, Adam moments, the step and the loader position: nothing else carries state
// (no dropout, no random draws after init), so it continues bit-identically.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "data/eval.h"
#include "data/loader.h"
#include "engine/core/check.h"
#include "engine/run/checkpoint.h"
#include "engine/core/io.h"
#include "engine/model/model.h"
#include "engine/model/optim.h"
#include "engine/run/plan.h"
#include "engine/run/run_dir.h"
#include "engine/run/sample.h"
#include "engine/run/step.h"
#include "engine/run/trainer.h"
#include "engine/run/watchdog.h"
#include "engine/run/weights.h"

namespace mt {
namespace train_detail {

// The plan of a run that trains: data.train and data.val are required.
Plan plan_to_train(const RunConfig& cfg);

// The token dataset of data.train or data.val.
std::shared_ptr<const data::TokenDataset> open_split(const RunConfig& cfg, data::Split split);

// This rank's share of the shuffled training sequences.
data::LoaderOptions loader_options(const RunConfig& cfg, const Plan& plan, const ProcessGrid& grid);

// The parts of a resolved manifest that must match for a resume (model, train, data). With
// override_schedule, train.lr, min_lr and warmup_iters may differ: returns "key: old -> new" for each.
std::vector<std::string> check_resume_compatible(const json& saved, const json& now, const std::string& ckpt_dir,
                                                 bool override_schedule);

// Keeps the lines of metrics.jsonl with step <= `step` (a resumed run rewrites what follows).
void truncate_metrics(const std::string& path, int64_t step);

// "12.3k", "1.20M"
std::string short_count(double x);
std::string short_duration(double seconds);

// The MoE load numbers of one log interval (the steps since the previous metrics line): every token of
// the global batch of every step, each counted once (summed over dp, whose ranks route their own
// tokens also under ep; tp ranks route the same tokens and are not summed), every micro-batch, every
// MoE layer. Counts are choices before any capacity drop.
struct MoeWindow {
  explicit MoeWindow(int experts) : n_experts(experts) {}
  int n_experts = 0;
  int64_t steps = 0;                  // steps in the interval
  double tokens = 0;                  // tokens routed by each MoE layer
  std::vector<double> load;           // [MoE layer * E + expert]: choices
  std::vector<double> dropped;        // [MoE layer]: choices dropped by the capacity factor
  std::vector<double> entropy;        // [MoE layer]: sum over the steps of their mean router entropy

  void add(const StepStats& s);       // a step's numbers, already summed over dp
  bool empty() const { return steps == 0 || load.empty(); }
  // moe_tokens, moe_steps, and per MoE layer: moe_load (each expert's share of the N*K choices),
  // moe_max_load (max over mean of the experts' choices), moe_dropped (share of the choices dropped),
  // moe_dead (experts that no token chose), moe_entropy (the mean over the tokens of the entropy of
  // their router probabilities, nats; ln E at most). Fractions rounded to 1e-5, ratios and entropies
  // to 1e-4.
  json to_json(int top_k) const;
  void clear() { *this = MoeWindow(n_experts); }
};

// Host copies of the model and Adam moments, assembled to full local length (ZeRO-1 shares are summed
// into place over their dp / edp group) for writing; and the reverse for loading.
template <typename T>
struct HostState {
  std::vector<float> dense, expert, dense_m, dense_v, expert_m, expert_v;

  void gather(Model<T>& model, Optimizer<T>& opt, const ProcessGrid& grid, Device& dev) {
    copy_to_host_f32(dense, model.params(ParamGroup::Dense), model.numel(ParamGroup::Dense), dev);
    copy_to_host_f32(expert, model.params(ParamGroup::Expert), model.numel(ParamGroup::Expert), dev);
    gather_moments(opt, ParamGroup::Dense, model.numel(ParamGroup::Dense), grid.dp(), dense_m, dense_v, dev);
    gather_moments(opt, ParamGroup::Expert, model.numel(ParamGroup::Expert), grid.edp(), expert_m, expert_v, dev);
  }
  static void gather_moments(Optimizer<T>& opt, ParamGroup g, size_t n, Comm& share, std::vector<float>& m,
                             std::vector<float>& v, Device& dev) {
    const size_t b = opt.share_begin(g), e = opt.share_end(g);
    std::vector<float> part;
    m.assign(n, 0.f);
    v.assign(n, 0.f);
    copy_to_host_f32(part, opt.exp_avg(g), e - b, dev);
    std::copy(part.begin(), part.end(), m.begin() + std::ptrdiff_t(b));
    copy_to_host_f32(part, opt.exp_avg_sq(g), e - b, dev);
    std::copy(part.begin(), part.end(), v.begin() + std::ptrdiff_t(b));
    if (n && (b != 0 || e != n)) {  // ZeRO-1: each rank holds one share; the sum puts them together
      share.allreduce_sum(m.data(), n, DType::F32, MemSpace::Host);
      share.allreduce_sum(v.data(), n, DType::F32, MemSpace::Host);
    }
  }
  void scatter(Model<T>& model, Optimizer<T>& opt, Device& dev) const {
    copy_from_host_f32(model.params(ParamGroup::Dense), dense, 0, dense.size(), dev);
    copy_from_host_f32(model.params(ParamGroup::Expert), expert, 0, expert.size(), dev);
    for (ParamGroup g : {ParamGroup::Dense, ParamGroup::Expert}) {
      const size_t b = opt.share_begin(g), e = opt.share_end(g);
      copy_from_host_f32(opt.exp_avg(g), g == ParamGroup::Dense ? dense_m : expert_m, b, e - b, dev);
      copy_from_host_f32(opt.exp_avg_sq(g), g == ParamGroup::Dense ? dense_v : expert_v, b, e - b, dev);
    }
    model.refresh_compute_weights();
  }
  CheckpointBuffers view() const {
    auto p = [](const std::vector<float>& x) { return x.empty() ? nullptr : x.data(); };
    return {p(dense), p(expert), p(dense_m), p(dense_v), p(expert_m), p(expert_v)};
  }
  CheckpointBuffersMut view_mut() {
    auto p = [](std::vector<float>& x) { return x.empty() ? nullptr : x.data(); };
    return {p(dense), p(expert), p(dense_m), p(dense_v), p(expert_m), p(expert_v)};
  }
};

// The val set's NLL summed over dp: each dp rank evaluates its contiguous share in micro-batches.
template <typename T>
data::EvalResult evaluate(Model<T>& model, const data::EvalSet& set, const ProcessGrid& grid) {
  const int m = model.micro_batch();
  const int64_t per_rank = set.sequences() / grid.dp_size;
  const int64_t first = per_rank * grid.dp_rank;
  double nll = 0;
  for (int64_t i = 0; i < per_rank; i += m) nll += model.forward_nll(set.window(first + i), m);
  if (grid.dp_size > 1) grid.dp().allreduce_sum(&nll, 1, DType::F64, MemSpace::Host);
  data::EvalResult r;
  r.nll_sum = nll;
  r.tokens = set.target_tokens();
  r.characters = set.characters();
  r.text_bytes = set.text_bytes();
  return r;
}

inline json json_number_or_null(double x) { return x >= 0 && std::isfinite(x) ? json(x) : json(nullptr); }


// The training run as named steps. run() is the loop; each step of it is one method, and the places
// where a run talks to the outside (metrics lines, checkpoints, evaluation, the stop flag) are one
// method each, so that a hook (a heartbeat, a lock, a checked write) has one obvious home.
template <typename T>
class Trainer {
 public:
  // Opens the data (bad data is bad input, found before any allocation), builds the model, the
  // optimizer and the gradient sync, and creates the run folder.
  Trainer(const RunConfig& cfg, const TrainOptions& opts, Ops<T>& ops, const ProcessGrid& grid);

  // Resume or init, then optimizer steps until the end of the schedule or a stop.
  TrainResult run();

 private:
  using clock = std::chrono::steady_clock;
  using P = acc_t<T>;

  void resume_or_init();
  void start_metrics();
  void print_header() const;
  StepStats optimizer_step();
  bool stop_agreed() const;
  void log(const StepStats& s);
  data::EvalResult evaluate(int64_t at_step);
  void checkpoint(int64_t at_step);
  void finish(TrainResult& result);
  void report_stop(bool signalled, TrainResult& result) const;
  void append_metrics(const json& line);

  const RunConfig& cfg_;
  const TrainOptions& opts_;
  const ProcessGrid& grid_;
  Device& dev_;
  const clock::time_point t_start_;
  const Plan plan_;
  const BatchSplit split_;
  RunDirLock lock_;  // one run per folder (root), taken before anything slow
  const int seq_len_;
  const double tokens_per_step_;
  data::SequenceLoader loader_;
  const data::EvalSet eval_set_;
  Model<T> model_;
  Optimizer<T> optim_;
  StepRunner<T> runner_;
  const CosineSchedule sched_;
  const std::filesystem::path out_;
  const json resolved_;  // config.json: re-plans to the same run
  const bool tty_;
  std::unique_ptr<CheckedWriter> metrics_;  // every line checked: a lost line stops the run (exit 1)
  std::vector<int32_t> batch_;  // this rank's sequences of the step, (local, seq_len + 1)
  int64_t step_ = 0;            // optimizer steps done
  double wall_before_ = 0;      // wall seconds of the earlier segments of a resumed run
  int64_t resumes_ = 0;         // segments before this one
  std::unique_ptr<Watchdog> watchdog_;  // aborts the job when no step completes in train.watchdog_s
  // Timing: the log window (steps since the last log line) and the whole run in this process.
  double window_seconds_ = 0;
  int64_t window_steps_ = 0;
  double run_seconds_ = 0;
  int64_t run_steps_ = 0;
  // MoE load over the log window (root's copy of the dp sums), and the last window's metrics for
  // summary.json.
  MoeWindow moe_window_{MoeWindow(cfg_.model.moe.n_experts)};
  json moe_last_;
};

template <typename T>
Trainer<T>::Trainer(const RunConfig& cfg, const TrainOptions& opts, Ops<T>& ops, const ProcessGrid& grid)
    : cfg_(cfg),
      opts_(opts),
      grid_(grid),
      dev_(ops.device()),
      t_start_(clock::now()),
      plan_(plan_to_train(cfg)),
      split_(split_batch(cfg, plan_.batch_size, grid.dp_size)),
      lock_(grid.is_root() ? RunDirLock(opts.out_dir) : RunDirLock()),
      seq_len_(cfg.model.seq_len),
      tokens_per_step_(double(plan_.batch_size) * seq_len_),
      loader_(open_split(cfg, data::Split::Train), loader_options(cfg, plan_, grid)),
      eval_set_(open_split(cfg, data::Split::Val), seq_len_, int64_t(cfg.eval.tokens), split_.micro * grid.dp_size),
      model_(cfg.model, split_.micro, grid, ops),
      optim_(model_, cfg.train, grid, ops, cfg.parallel.zero1 ? ZeroStage::Stage1 : ZeroStage::None),
      runner_(model_, optim_, grid, split_, dev_),
      sched_{plan_.lr, cfg.train.min_lr, plan_.warmup_iters, plan_.iters},
      out_(opts.out_dir),
      resolved_(resolved_manifest(cfg, plan_)),
      tty_(grid.world_size == 1 && ::isatty(1) == 1),  // mpirun gives ranks a pty
      batch_(size_t(split_.local) * size_t(seq_len_ + 1)) {
  if (grid.is_root()) std::filesystem::create_directories(out_);
}

template <typename T>
TrainResult Trainer<T>::run() {
  resume_or_init();
  start_metrics();
  print_header();
  watchdog_ = std::make_unique<Watchdog>(cfg_.train.watchdog_s, grid_, "train.watchdog_s");
  TrainResult result;
  while (step_ < plan_.iters) {
    const StepStats s = optimizer_step();
    moe_window_.add(s);
    const bool signalled = stop_agreed();
    watchdog_->progress(step_);
    if (opts_.between_steps) {
      const std::string note = opts_.between_steps();
      if (!note.empty() && grid_.is_root()) {
        std::printf("%s\n", note.c_str());
        std::fflush(stdout);
      }
    }
    const bool stop_here =
        signalled || (opts_.stop_after > 0 && step_ >= opts_.stop_after && step_ < plan_.iters);
    if (step_ == 1 || step_ == plan_.iters || stop_here || (cfg_.log.every > 0 && step_ % cfg_.log.every == 0)) {
      log(s);
    }
    if (step_ == plan_.iters) {
      finish(result);
      break;
    }
    if (cfg_.eval.every > 0 && step_ % cfg_.eval.every == 0) evaluate(step_);
    if (stop_here || (cfg_.checkpoint.every > 0 && step_ % cfg_.checkpoint.every == 0)) checkpoint(step_);
    if (stop_here) {
      report_stop(signalled, result);
      break;
    }
  }
  result.step = step_;
  std::fflush(stdout);
  return result;
}

// Fresh parameters from the seed, or parameters, Adam moments, step and loader position from a
// checkpoint (--resume auto: the run folder's latest; --resume DIR: that checkpoint or run folder).
template <typename T>
void Trainer<T>::resume_or_init() {
  namespace fs = std::filesystem;
  std::string resume_dir;
  json st;  // the checkpoint's state.json, verified
  if (opts_.resume == ResumeMode::Auto) resume_dir = latest_intact_checkpoint(opts_.out_dir, &st, grid_.is_root());
  if (opts_.resume == ResumeMode::From) {
    resume_dir = fs::exists(fs::path(opts_.resume_from) / "state.json") ? opts_.resume_from
                                                                         : latest_checkpoint(opts_.resume_from);
    MT_INPUT(!resume_dir.empty(), "--resume ", opts_.resume_from, ": no complete checkpoint there");
    st = verify_checkpoint(resume_dir);
  }
  if (resume_dir.empty()) {
    model_.init_params(cfg_.train.seed);
    return;
  }
  MT_INPUT(st.contains("config"), resume_dir, "/state.json: no config (not a training checkpoint)");
  for (const std::string& change : check_resume_compatible(st["config"], resolved_, resume_dir, opts_.override_schedule))
    if (grid_.is_root()) std::printf("--override-schedule: %s\n", change.c_str());
  HostState<T> hs;
  hs.dense.resize(model_.numel(ParamGroup::Dense));
  hs.expert.resize(model_.numel(ParamGroup::Expert));
  hs.dense_m.resize(hs.dense.size());
  hs.dense_v.resize(hs.dense.size());
  hs.expert_m.resize(hs.expert.size());
  hs.expert_v.resize(hs.expert.size());
  load_checkpoint(resume_dir, model_.layout(), hs.view_mut());
  hs.scatter(model_, optim_, dev_);
  step_ = st.at("step").get<int64_t>();
  wall_before_ = st.value("wall_seconds", 0.0);
  resumes_ = st.value("resumes", int64_t(0)) + 1;
  with_json_errors(resume_dir + "/state.json: loader", [&] { loader_.restore(st.at("loader")); });
  if (cfg_.model.moe.uses_bias())
    model_.set_expert_bias(read_expert_bias(st, resume_dir + "/state.json", model_.expert_bias().size()));
  if (grid_.is_root()) {
    std::printf("resuming %s from %s (step %lld)\n", cfg_.name.c_str(), resume_dir.c_str(), (long long)step_);
  }
}

// config.json, and metrics.jsonl cut back to the resumed step (what follows is written again).
template <typename T>
void Trainer<T>::start_metrics() {
  if (!grid_.is_root()) return;
  const std::string metrics_path = (out_ / "metrics.jsonl").string();
  write_text_atomic((out_ / "config.json").string(), resolved_.dump(2) + "\n");
  truncate_metrics(metrics_path, step_);
  metrics_ = std::make_unique<CheckedWriter>(metrics_path);
}

template <typename T>
void Trainer<T>::print_header() const {
  if (!grid_.is_root()) return;
  std::printf("%s: N %.4g, Na %.4g (ra %.1f%%), %lld steps of %d x %d tokens, D %.4g, D-hat %.4g (%.2f epochs), lr %.3g\n",
              cfg_.name.c_str(), double(plan_.n_params), double(plan_.n_active), 100 * plan_.activation_rate,
              (long long)plan_.iters, plan_.batch_size, seq_len_, plan_.tokens, plan_.unique_tokens, plan_.epochs,
              plan_.lr);
  std::printf("  %s; %s; micro-batch %d x %d per rank\n", opts_.device_name.c_str(), grid_.describe().c_str(),
              split_.micro, split_.n_micro);
  std::fflush(stdout);
}

// One optimizer step (StepRunner) on the loader's next batch at the schedule's lr; a loss or gradient
// norm that is not finite stops the run with the way back. Returns the step's statistics, summed over dp.
template <typename T>
StepStats Trainer<T>::optimizer_step() {
  const auto t0 = clock::now();
  model_.profiler().reset();
  loader_.next(batch_.data());
  StepStats s;
  try {
    s = runner_.run(batch_.data(), step_ + 1, sched_.at(step_));
  } catch (const NonFiniteStep& e) {
    const std::string last = latest_checkpoint(opts_.out_dir);
    throw Error(str(cfg_.name, ": ", e.what(), "; training stopped. The last good checkpoint is ",
                    last.empty() ? std::string("(none)") : last,
                    ". Resume from it with a lower lr or a longer warmup: moetrain train CONFIG --out ", opts_.out_dir,
                    " --resume auto --override-schedule --set train.lr=... --set train.warmup_iters=..."));
  }
  ++step_;
  s.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  window_seconds_ += s.seconds;
  ++window_steps_;
  run_seconds_ += s.seconds;
  ++run_steps_;
  return s;
}

// The stop flag (opts.should_stop: SIGTERM / SIGINT) summed over the world, so that every rank stops at
// the same step.
template <typename T>
bool Trainer<T>::stop_agreed() const {
  double flag = opts_.should_stop && opts_.should_stop() ? 1 : 0;
  if (grid_.world_size > 1) grid_.world().allreduce_sum(&flag, 1, DType::F64, MemSpace::Host);
  return flag > 0;
}

// A metrics.jsonl line and the progress line (root only).
template <typename T>
void Trainer<T>::log(const StepStats& s) {
  if (!moe_window_.empty()) moe_last_ = moe_window_.to_json(cfg_.model.moe.top_k);
  moe_window_.clear();
  if (!grid_.is_root()) return;
  const double tok_s = tokens_per_step_ * double(window_steps_) / window_seconds_;
  const double flops = model_.profiler().total_flops() * grid_.world_size;  // this step, executed
  const double mfu = opts_.peak_flops > 0 ? flops / s.seconds / (opts_.peak_flops * grid_.world_size) : 0;
  json line{{"step", step_},        {"tokens", double(step_) * tokens_per_step_},
            {"epoch", loader_.epochs()}, {"lr", s.lr},
            {"loss", s.loss()},     {"balance_loss", s.balance_loss},
            {"z_loss", s.z_loss},   {"grad_norm", s.grad_norm},
            {"tok_per_s", tok_s},   {"mfu", mfu}};
  if (!s.expert_load.empty()) {
    line["expert_load"] = s.expert_load_json(cfg_.model.moe.n_experts);
    line["dropped"] = s.dropped;
  }
  if (!s.expert_load.empty()) line.update(moe_last_);
  append_metrics(line);
  const double eta = double(plan_.iters - step_) * (window_seconds_ / double(window_steps_));
  char buf[256];
  std::snprintf(buf, sizeof buf, "step %lld/%lld | loss %.4f | lr %.2e | norm %.2f | %s tok/s | ETA %s",
                (long long)step_, (long long)plan_.iters, s.loss(), s.lr, s.grad_norm, short_count(tok_s).c_str(),
                short_duration(eta).c_str());
  if (tty_) {
    std::printf("\r%-100s", buf);
  } else {
    std::printf("%s\n", buf);
  }
  std::fflush(stdout);
  window_seconds_ = 0;
  window_steps_ = 0;
}

// The val set's loss and BPC, logged as a metrics line.
template <typename T>
data::EvalResult Trainer<T>::evaluate(int64_t at_step) {
  const data::EvalResult r = train_detail::evaluate(model_, eval_set_, grid_);
  if (grid_.is_root()) {
    append_metrics({{"step", at_step},
                    {"tokens", double(at_step) * tokens_per_step_},
                    {"epoch", loader_.epochs()},
                    {"val_loss", r.loss()},
                    {"val_bpc", json_number_or_null(r.bpc())}});
    if (tty_) std::printf("\r%-100s\r", "");
    std::printf("step %lld: val loss %.4f, val bpc %s\n", (long long)at_step, r.loss(),
                r.bpc() >= 0 ? std::to_string(r.bpc()).c_str() : "n/a (unknown tokenizer)");
    std::fflush(stdout);
  }
  if (cfg_.eval.sample_tokens > 0) print_eval_sample(model_, cfg_, grid_.is_root());
  if (watchdog_) watchdog_->progress(at_step);
  return r;
}

// checkpoints/step_XXXXXXXX/: parameters, Adam moments, step, loader position and the expert bias (every
// rank takes part).
template <typename T>
void Trainer<T>::checkpoint(int64_t at_step) {
  HostState<T> hs;
  hs.gather(model_, optim_, grid_, dev_);
  json st;
  st["step"] = at_step;
  st["tokens"] = double(at_step) * tokens_per_step_;
  st["loader"] = loader_.state();
  st["seed"] = cfg_.train.seed;
  st["config"] = resolved_;
  st["wall_seconds"] = wall_before_ + std::chrono::duration<double>(clock::now() - t_start_).count();
  st["resumes"] = resumes_;
  if (cfg_.model.moe.uses_bias()) st["moe_bias"] = model_.expert_bias();  // (MoE layer * E + expert)
  save_checkpoint(opts_.out_dir, at_step, st, grid_, model_.layout(), hs.view(), std::max(1, cfg_.checkpoint.keep));
  if (watchdog_) watchdog_->progress(at_step);
}

// The end of the schedule: a last evaluation and checkpoint, and summary.json.
template <typename T>
void Trainer<T>::finish(TrainResult& result) {
  const data::EvalResult r = evaluate(step_);
  checkpoint(step_);
  result.val_bpc = r.bpc();
  result.outcome = TrainOutcome::Finished;
  if (!grid_.is_root()) return;
  json sum = plan_.to_json();
  sum["name"] = cfg_.name;
  sum["status"] = "finished";
  sum["steps"] = step_;
  sum["val_loss"] = r.loss();
  sum["val_bpc"] = json_number_or_null(r.bpc());
  sum["val_bits_per_byte"] = json_number_or_null(r.bits_per_byte());
  sum["wall_seconds"] = wall_before_ + std::chrono::duration<double>(clock::now() - t_start_).count();
  sum["resumes"] = resumes_;
  sum["train_seconds"] = run_seconds_;
  sum["tok_per_s"] = run_seconds_ > 0 ? tokens_per_step_ * double(run_steps_) / run_seconds_ : 0;
  sum["device"] = opts_.device_name;
  sum["world_size"] = grid_.world_size;
  sum["layout"] = {{"tp", grid_.tp_size}, {"dp", grid_.dp_size}, {"ep", grid_.ep_size}};
  if (!moe_last_.empty()) {
    json layers = json::array();
    for (int l = 0; l < cfg_.model.n_layers; ++l)
      if (cfg_.model.is_moe_layer(l)) layers.push_back(l);
    sum["moe_layers"] = layers;  // the blocks of moe_load's rows
    sum.update(moe_last_);       // the last log interval's
  }
  write_text_atomic((out_ / "summary.json").string(), sum.dump(2) + "\n");
  std::printf("finished %s: %lld steps, val loss %.4f, val bpc %.4f, %.1f s\n", cfg_.name.c_str(), (long long)step_,
              r.loss(), r.bpc(), sum["wall_seconds"].get<double>());
}

// A stop before the end (signal or --stop-after): the checkpoint is written; say how to go on.
template <typename T>
void Trainer<T>::report_stop(bool signalled, TrainResult& result) const {
  result.outcome = signalled ? TrainOutcome::Interrupted : TrainOutcome::Stopped;
  if (!grid_.is_root()) return;
  if (tty_) std::printf("\n");
  std::printf("stopped at step %lld/%lld (%s); continue with --resume auto\n", (long long)step_,
              (long long)plan_.iters, signalled ? "signal" : "--stop-after");
}

// Every metrics.jsonl line goes through here (root only).
template <typename T>
void Trainer<T>::append_metrics(const json& line) {
  metrics_->write_line(line.dump());
}

}  // namespace train_detail

template <typename T>
TrainResult train(const RunConfig& cfg, const TrainOptions& opts, Ops<T>& ops, const ProcessGrid& grid) {
  return train_detail::Trainer<T>(cfg, opts, ops, grid).run();
}

template <typename T>
json evaluate_checkpoint(const RunConfig& cfg, const std::string& ckpt_dir, Ops<T>& ops, const ProcessGrid& grid) {
  using namespace train_detail;
  MT_INPUT(!cfg.data.val.empty(), cfg.name, ": data.val is required to evaluate");
  const Plan plan = make_plan(cfg);
  const BatchSplit bs = split_batch(cfg, plan.batch_size, grid.dp_size);
  const data::EvalSet set(open_split(cfg, data::Split::Val), cfg.model.seq_len, int64_t(cfg.eval.tokens), bs.micro * grid.dp_size);
  Model<T> model(cfg.model, bs.micro, grid, ops);
  load_model_weights(model, ckpt_dir, ops.device());
  const data::EvalResult r = evaluate(model, set, grid);
  return json{{"checkpoint", ckpt_dir},
              {"val_loss", r.loss()},
              {"val_bpc", json_number_or_null(r.bpc())},
              {"val_bits_per_byte", json_number_or_null(r.bits_per_byte())},
              {"tokens", r.tokens},
              {"characters", json_number_or_null(r.characters)}};
}

}  // namespace mt
