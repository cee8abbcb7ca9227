// Why: the body of train<T> and evaluate_checkpoint<T> (engine/trainer.h), instantiated for the CPU in
// engine/trainer.cpp and for the GPU in cuda/. One step of the loop:
//   the loader gives this rank its B/dp sequences of the global batch; they run as B/(dp m)
//   micro-batches whose gradients accumulate, each scaled by 1/(micro-batches x dp) so that the
//   dp sum is the mean over the global batch; the dp reduction starts in buckets during the last
//   micro-batch's backward (GradSync); then the global gradient norm, clipping and AdamW at the
//   cosine schedule's lr. Logged loss, balance loss and expert load are summed over dp (global).
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
#include "engine/model/grad_sync.h"
#include "engine/core/io.h"
#include "engine/model/model.h"
#include "engine/model/optim.h"
#include "engine/run/plan.h"
#include "engine/run/trainer.h"
#include "engine/run/watchdog.h"

namespace mt {
namespace train_detail {

// Set by the signal handlers (trainer.cpp); read once per step.
bool stop_requested();

// B / dp sequences per rank in micro-batches of m: the layout must divide the batch.
struct BatchSplit {
  int local = 0;       // sequences per rank per step
  int micro = 0;       // sequences per micro-batch
  int n_micro = 0;     // micro-batches per step
};
BatchSplit split_batch(const RunConfig& cfg, int batch_size, int dp);

// The parts of a resolved manifest that must match for a resume (model, train, data).
void check_resume_compatible(const json& saved, const json& now, const std::string& ckpt_dir);

// Keeps the lines of metrics.jsonl with step <= `step` (a resumed run rewrites what follows).
void truncate_metrics(const std::string& path, int64_t step);

// "12.3k", "1.20M"
std::string short_count(double x);
std::string short_duration(double seconds);

// Host copies of the model and Adam moments, assembled to full local length (ZeRO-1 shares are summed
// into place over their dp / edp group) for writing; and the reverse for loading.
template <typename T>
struct HostState {
  std::vector<float> dense, expert, dense_m, dense_v, expert_m, expert_v;

  static void to_host(std::vector<float>& dst, const acc_t<T>* src, size_t n, Device& dev) {
    dst.resize(n);
    if (n == 0) return;
    if constexpr (std::is_same_v<acc_t<T>, float>) {
      dev.copy(dst.data(), src, n * sizeof(float), CopyKind::DeviceToHost);
    } else {
      std::vector<acc_t<T>> tmp(n);
      dev.copy(tmp.data(), src, n * sizeof(acc_t<T>), CopyKind::DeviceToHost);
      for (size_t i = 0; i < n; ++i) dst[i] = float(tmp[i]);
    }
  }
  static void to_device(acc_t<T>* dst, const std::vector<float>& src, size_t begin, size_t n, Device& dev) {
    if (n == 0) return;
    if constexpr (std::is_same_v<acc_t<T>, float>) {
      dev.copy(dst, src.data() + begin, n * sizeof(float), CopyKind::HostToDevice);
    } else {
      std::vector<acc_t<T>> tmp(src.begin() + std::ptrdiff_t(begin), src.begin() + std::ptrdiff_t(begin + n));
      dev.copy(dst, tmp.data(), n * sizeof(acc_t<T>), CopyKind::HostToDevice);
    }
  }

  void gather(Model<T>& model, Optimizer<T>& opt, const ProcessGrid& grid, Device& dev) {
    to_host(dense, model.params(ParamGroup::Dense), model.numel(ParamGroup::Dense), dev);
    to_host(expert, model.params(ParamGroup::Expert), model.numel(ParamGroup::Expert), dev);
    gather_moments(opt, ParamGroup::Dense, model.numel(ParamGroup::Dense), grid.dp(), dense_m, dense_v, dev);
    gather_moments(opt, ParamGroup::Expert, model.numel(ParamGroup::Expert), grid.edp(), expert_m, expert_v, dev);
  }
  static void gather_moments(Optimizer<T>& opt, ParamGroup g, size_t n, Comm& share, std::vector<float>& m,
                             std::vector<float>& v, Device& dev) {
    const size_t b = opt.share_begin(g), e = opt.share_end(g);
    std::vector<float> part;
    m.assign(n, 0.f);
    v.assign(n, 0.f);
    to_host(part, opt.exp_avg(g), e - b, dev);
    std::copy(part.begin(), part.end(), m.begin() + std::ptrdiff_t(b));
    to_host(part, opt.exp_avg_sq(g), e - b, dev);
    std::copy(part.begin(), part.end(), v.begin() + std::ptrdiff_t(b));
    if (n && (b != 0 || e != n)) {  // ZeRO-1: each rank holds one share; the sum puts them together
      share.allreduce_sum(m.data(), n, DType::F32, MemSpace::Host);
      share.allreduce_sum(v.data(), n, DType::F32, MemSpace::Host);
    }
  }
  void scatter(Model<T>& model, Optimizer<T>& opt, Device& dev) const {
    to_device(model.params(ParamGroup::Dense), dense, 0, dense.size(), dev);
    to_device(model.params(ParamGroup::Expert), expert, 0, expert.size(), dev);
    for (ParamGroup g : {ParamGroup::Dense, ParamGroup::Expert}) {
      const size_t b = opt.share_begin(g), e = opt.share_end(g);
      to_device(opt.exp_avg(g), g == ParamGroup::Dense ? dense_m : expert_m, b, e - b, dev);
      to_device(opt.exp_avg_sq(g), g == ParamGroup::Dense ? dense_v : expert_v, b, e - b, dev);
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

}  // namespace train_detail

template <typename T>
TrainResult train(const RunConfig& cfg, const TrainOptions& opts, Ops<T>& ops, const ProcessGrid& grid) {
  namespace fs = std::filesystem;
  using namespace train_detail;
  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  Device& dev = ops.device();
  const Plan plan = make_plan(cfg);
  const int S = cfg.model.seq_len;
  const BatchSplit bs = split_batch(cfg, plan.batch_size, grid.dp_size);
  MT_INPUT(!cfg.data.train.empty(), cfg.name, ": data.train is required to train");
  MT_INPUT(!cfg.data.val.empty(), cfg.name, ": data.val is required to train (the run reports val BPC)");

  // Data first: bad data is bad input, found before any allocation.
  auto train_ds = std::make_shared<const data::TokenDataset>(
      data::open_dataset(cfg.data.train, data::Split::Train, cfg.model.vocab_size));
  auto val_ds = std::make_shared<const data::TokenDataset>(
      data::open_dataset(cfg.data.val, data::Split::Val, cfg.model.vocab_size));
  data::LoaderOptions lo;
  lo.seq_len = S;
  lo.unique_tokens = int64_t(std::llround(plan.unique_tokens));
  lo.seed = cfg.train.seed;
  lo.batch_size = plan.batch_size;
  lo.dp_rank = grid.dp_rank;
  lo.dp_size = grid.dp_size;
  data::SequenceLoader loader(train_ds, lo);
  const data::EvalSet eval_set(val_ds, S, int64_t(cfg.eval.tokens), bs.micro * grid.dp_size);

  Model<T> model(cfg.model, bs.micro, grid, ops);
  Optimizer<T> optim(model, cfg.train, grid, ops, cfg.parallel.zero1 ? ZeroStage::Stage1 : ZeroStage::None);
  using P = acc_t<T>;
  const MemSpace space = dev.kind() == DeviceKind::Cpu ? MemSpace::Host : MemSpace::Device;
  std::unique_ptr<GradSync<P>> sync;
  if (grid.dp_size > 1 || grid.edp_size > 1) {
    sync = std::make_unique<GradSync<P>>(
        typename GradSync<P>::Buffer{model.grads(ParamGroup::Dense), &model.layout().dense, &grid.dp()},
        typename GradSync<P>::Buffer{model.grads(ParamGroup::Expert), &model.layout().expert, &grid.edp()}, space,
        size_t(16) << 20);
  }
  const CosineSchedule sched{plan.lr, cfg.train.min_lr, plan.warmup_iters, plan.iters};

  // The run folder and the resolved config (config.json re-plans to the same run).
  const fs::path out(opts.out_dir);
  const json resolved = resolved_manifest(cfg, plan);
  if (grid.is_root()) fs::create_directories(out);
  const std::string metrics_path = (out / "metrics.jsonl").string();

  // Start: fresh or from a checkpoint.
  int64_t step = 0;
  double wall_before = 0;  // wall seconds of the earlier segments of a resumed run
  int64_t resumes = 0;
  std::string resume_dir;
  if (opts.resume == ResumeMode::Auto) resume_dir = latest_checkpoint(opts.out_dir);
  if (opts.resume == ResumeMode::From) {
    resume_dir = fs::exists(fs::path(opts.resume_from) / "state.json") ? opts.resume_from
                                                                       : latest_checkpoint(opts.resume_from);
    MT_INPUT(!resume_dir.empty(), "--resume ", opts.resume_from, ": no complete checkpoint there");
  }
  if (!resume_dir.empty()) {
    const json st = verify_checkpoint(resume_dir);
    MT_INPUT(st.contains("config"), resume_dir, "/state.json: no config (not a training checkpoint)");
    check_resume_compatible(st["config"], resolved, resume_dir);
    HostState<T> hs;
    hs.dense.resize(model.numel(ParamGroup::Dense));
    hs.expert.resize(model.numel(ParamGroup::Expert));
    hs.dense_m.resize(hs.dense.size());
    hs.dense_v.resize(hs.dense.size());
    hs.expert_m.resize(hs.expert.size());
    hs.expert_v.resize(hs.expert.size());
    load_checkpoint(resume_dir, model.layout(), hs.view_mut());
    hs.scatter(model, optim, dev);
    step = st.at("step").get<int64_t>();
    wall_before = st.value("wall_seconds", 0.0);
    resumes = st.value("resumes", int64_t(0)) + 1;
    loader.restore(st.at("loader"));
    if (grid.is_root()) std::printf("resuming %s from %s (step %lld)\n", cfg.name.c_str(), resume_dir.c_str(), (long long)step);
  } else {
    model.init_params(cfg.train.seed);
  }
  if (grid.is_root()) {
    write_text_atomic((out / "config.json").string(), resolved.dump(2) + "\n");
    truncate_metrics(metrics_path, step);
  }
  std::ofstream metrics;
  if (grid.is_root()) metrics.open(metrics_path, std::ios::app);

  const bool tty = grid.world_size == 1 && ::isatty(1) == 1;  // mpirun gives ranks a pty
  if (grid.is_root()) {
    std::printf("%s: N %.4g, Na %.4g (ra %.1f%%), %lld steps of %d x %d tokens, D %.4g, D-hat %.4g (%.2f epochs), lr %.3g\n",
                cfg.name.c_str(), double(plan.n_params), double(plan.n_active), 100 * plan.activation_rate,
                (long long)plan.iters, plan.batch_size, S, plan.tokens, plan.unique_tokens, plan.epochs, plan.lr);
    std::printf("  %s; %s; micro-batch %d x %d per rank\n", opts.device_name.c_str(), grid.describe().c_str(),
                bs.micro, bs.n_micro);
    std::fflush(stdout);
  }

  Watchdog watchdog(cfg.train.watchdog_s, grid.world_rank, "train.watchdog_s");
  auto save = [&](int64_t at_step) {
    HostState<T> hs;
    hs.gather(model, optim, grid, dev);
    json st;
    st["step"] = at_step;
    st["tokens"] = double(at_step) * plan.batch_size * S;
    st["loader"] = loader.state();
    st["seed"] = cfg.train.seed;
    st["config"] = resolved;
    st["wall_seconds"] = wall_before + std::chrono::duration<double>(clock::now() - t_start).count();
    st["resumes"] = resumes;
    save_checkpoint(opts.out_dir, at_step, st, grid, model.layout(), hs.view(), std::max(1, cfg.checkpoint.keep));
    watchdog.progress(at_step);
  };
  auto run_eval = [&](int64_t at_step) {
    data::EvalResult r = evaluate(model, eval_set, grid);
    if (grid.is_root()) {
      json line{{"step", at_step}, {"tokens", double(at_step) * plan.batch_size * S}, {"epoch", loader.epochs()},
                {"val_loss", r.loss()}, {"val_bpc", json_number_or_null(r.bpc())}};
      metrics << line.dump() << "\n" << std::flush;
      if (tty) std::printf("\r%-100s\r", "");
      std::printf("step %lld: val loss %.4f, val bpc %s\n", (long long)at_step, r.loss(),
                  r.bpc() >= 0 ? std::to_string(r.bpc()).c_str() : "n/a (unknown tokenizer)");
      std::fflush(stdout);
    }
    watchdog.progress(at_step);
    return r;
  };

  std::vector<int32_t> batch(size_t(bs.local) * size_t(S + 1));
  const float loss_scale = 1.0f / float(bs.n_micro * grid.dp_size);
  const double tokens_per_step = double(plan.batch_size) * S;
  double window_seconds = 0;
  int64_t window_steps = 0;
  double run_seconds = 0;
  int64_t run_steps = 0;
  TrainResult result;

  while (step < plan.iters) {
    const auto t0 = clock::now();
    const double lr = sched.at(step);
    model.zero_grads();
    model.profiler().reset();
    loader.next(batch.data());
    double stats[4] = {0, 0, 0, 0};  // loss_sum, tokens, balance, z
    std::vector<double> load;        // [layer][E] choices, summed over micro-batches
    int64_t dropped = 0;
    for (int mb = 0; mb < bs.n_micro; ++mb) {
      GradReadyHook* hook = mb == bs.n_micro - 1 ? sync.get() : nullptr;
      MicroBatchStats s = model.forward_backward(batch.data() + size_t(mb) * bs.micro * (S + 1), bs.micro,
                                                 loss_scale, hook);
      stats[0] += s.loss_sum;
      stats[1] += double(s.tokens);
      stats[2] += s.balance_loss / bs.n_micro;
      stats[3] += s.z_loss / bs.n_micro;
      size_t k = 0;
      for (const auto& layer : s.tokens_per_expert) {
        if (load.size() < k + layer.size()) load.resize(k + layer.size(), 0.0);
        for (int64_t c : layer) load[k++] += double(c);
      }
      dropped += s.dropped;
    }
    if (sync) sync->finish();
    // Global statistics over dp (and the stop flag over the world).
    std::vector<double> red(stats, stats + 4);
    red.insert(red.end(), load.begin(), load.end());
    red.push_back(double(dropped));
    if (grid.dp_size > 1) grid.dp().allreduce_sum(red.data(), red.size(), DType::F64, MemSpace::Host);
    const double loss = red[0] / red[1];
    const double balance = red[2] / grid.dp_size, zl = red[3] / grid.dp_size;
    const double grad_norm = optim.grad_norm();
    if (!std::isfinite(loss) || !std::isfinite(grad_norm)) {
      const std::string last = latest_checkpoint(opts.out_dir);
      throw Error(str(cfg.name, ": the loss is ", loss, " and the gradient norm ", grad_norm, " at step ", step + 1,
               "; training stopped. The last good checkpoint is ", last.empty() ? std::string("(none)") : last,
               " (lower train.lr or raise train.warmup_iters)"));
    }
    optim.update(int(step + 1), lr, grad_norm);
    ++step;
    dev.synchronize();
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    window_seconds += dt;
    ++window_steps;
    run_seconds += dt;
    ++run_steps;

    double flag = stop_requested() ? 1 : 0;
    if (grid.world_size > 1) grid.world().allreduce_sum(&flag, 1, DType::F64, MemSpace::Host);
    const bool signalled = flag > 0;
    watchdog.progress(step);
    const bool stop_here = signalled || (opts.stop_after > 0 && step >= opts.stop_after && step < plan.iters);

    // Logging.
    const bool log_now = step == 1 || step == plan.iters || stop_here || (cfg.log.every > 0 && step % cfg.log.every == 0);
    if (log_now && grid.is_root()) {
      const double tok_s = tokens_per_step * window_steps / window_seconds;
      const double flops = model.profiler().total_flops() * grid.world_size;  // this step, executed
      const double mfu = opts.peak_flops > 0 ? flops / dt / (opts.peak_flops * grid.world_size) : 0;
      json line{{"step", step},       {"tokens", double(step) * tokens_per_step},
                {"epoch", loader.epochs()}, {"lr", lr},
                {"loss", loss},       {"balance_loss", balance},
                {"z_loss", zl},       {"grad_norm", grad_norm},
                {"tok_per_s", tok_s}, {"mfu", mfu}};
      if (!load.empty()) {
        const int E = cfg.model.moe.n_experts;
        json el = json::array();
        for (size_t l = 0; l * E < load.size(); ++l) {
          double mn = 1e300, mx = 0, sum = 0;
          for (int e = 0; e < E; ++e) {
            const double c = red[4 + l * E + size_t(e)];
            mn = std::min(mn, c);
            mx = std::max(mx, c);
            sum += c;
          }
          el.push_back({{"layer", l}, {"min", mn}, {"max", mx}, {"mean", sum / E}});
        }
        line["expert_load"] = el;
        line["dropped"] = red.back();
      }
      metrics << line.dump() << "\n" << std::flush;
      const double eta = double(plan.iters - step) * (window_seconds / window_steps);
      char buf[256];
      std::snprintf(buf, sizeof buf, "step %lld/%lld | loss %.4f | lr %.2e | norm %.2f | %s tok/s | ETA %s",
                    (long long)step, (long long)plan.iters, loss, lr, grad_norm, short_count(tok_s).c_str(),
                    short_duration(eta).c_str());
      if (tty) {
        std::printf("\r%-100s", buf);
      } else {
        std::printf("%s\n", buf);
      }
      std::fflush(stdout);
      window_seconds = 0;
      window_steps = 0;
    }

    const bool last = step == plan.iters;
    if (!last && cfg.eval.every > 0 && step % cfg.eval.every == 0) run_eval(step);
    if (last) {
      const data::EvalResult r = run_eval(step);
      save(step);
      result.val_bpc = r.bpc();
      if (grid.is_root()) {
        json sum = plan.to_json();
        sum["name"] = cfg.name;
        sum["status"] = "finished";
        sum["steps"] = step;
        sum["val_loss"] = r.loss();
        sum["val_bpc"] = json_number_or_null(r.bpc());
        sum["val_bits_per_byte"] = json_number_or_null(r.bits_per_byte());
        sum["wall_seconds"] = wall_before + std::chrono::duration<double>(clock::now() - t_start).count();
        sum["resumes"] = resumes;
        sum["train_seconds"] = run_seconds;
        sum["tok_per_s"] = run_seconds > 0 ? tokens_per_step * run_steps / run_seconds : 0;
        sum["device"] = opts.device_name;
        sum["world_size"] = grid.world_size;
        sum["layout"] = {{"tp", grid.tp_size}, {"dp", grid.dp_size}, {"ep", grid.ep_size}};
        write_text_atomic((out / "summary.json").string(), sum.dump(2) + "\n");
        std::printf("finished %s: %lld steps, val loss %.4f, val bpc %.4f, %.1f s\n", cfg.name.c_str(),
                    (long long)step, r.loss(), r.bpc(), sum["wall_seconds"].get<double>());
      }
      result.outcome = TrainOutcome::Finished;
      break;
    }
    if (stop_here || (cfg.checkpoint.every > 0 && step % cfg.checkpoint.every == 0)) save(step);
    if (stop_here) {
      result.outcome = signalled ? TrainOutcome::Interrupted : TrainOutcome::Stopped;
      if (grid.is_root()) {
        if (tty) std::printf("\n");
        std::printf("stopped at step %lld/%lld (%s); continue with --resume auto\n", (long long)step,
                    (long long)plan.iters, signalled ? "signal" : "--stop-after");
      }
      break;
    }
  }
  if (step >= plan.iters && result.outcome != TrainOutcome::Finished) result.outcome = TrainOutcome::Finished;
  result.step = step;
  std::fflush(stdout);
  return result;
}

template <typename T>
json evaluate_checkpoint(const RunConfig& cfg, const std::string& ckpt_dir, Ops<T>& ops, const ProcessGrid& grid) {
  using namespace train_detail;
  MT_INPUT(!cfg.data.val.empty(), cfg.name, ": data.val is required to evaluate");
  const Plan plan = make_plan(cfg);
  const BatchSplit bs = split_batch(cfg, plan.batch_size, grid.dp_size);
  auto val_ds = std::make_shared<const data::TokenDataset>(
      data::open_dataset(cfg.data.val, data::Split::Val, cfg.model.vocab_size));
  const data::EvalSet set(val_ds, cfg.model.seq_len, int64_t(cfg.eval.tokens), bs.micro * grid.dp_size);
  Model<T> model(cfg.model, bs.micro, grid, ops);
  {
    std::vector<float> dense(model.numel(ParamGroup::Dense)), expert(model.numel(ParamGroup::Expert));
    load_weights(ckpt_dir, model.layout(), dense.data(), expert.data());
    HostState<T>::to_device(model.params(ParamGroup::Dense), dense, 0, dense.size(), ops.device());
    HostState<T>::to_device(model.params(ParamGroup::Expert), expert, 0, expert.size(), ops.device());
    model.refresh_compute_weights();
  }
  const data::EvalResult r = evaluate(model, set, grid);
  return json{{"checkpoint", ckpt_dir},
              {"val_loss", r.loss()},
              {"val_bpc", json_number_or_null(r.bpc())},
              {"val_bits_per_byte", json_number_or_null(r.bits_per_byte())},
              {"tokens", r.tokens},
              {"characters", json_number_or_null(r.characters)}};
}

}  // namespace mt
