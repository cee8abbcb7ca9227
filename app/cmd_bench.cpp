// Why: `moetrain bench CONFIG [--steps N]`: the speed of whole training steps of a manifest's model on
// this machine (no data needed: tokens are random), with the numbers that say how close to the
// hardware it runs: tokens/s, MFU (the paper's model FLOPs) and executed FLOP/s against the peak
// reference, against the rate the backend's own GEMM reaches on the step's largest GEMM shape
// (measured here), time per op family, peak memory, and the step's structure: kernel launches and host
// syncs per step (Device::counters(), engine/core/device.h). Each step is the trainer's own
// (StepRunner, engine/run/step.h): micro-batches with accumulation, the dp gradient all-reduce when
// there is more than one dp rank, gradient norm, clipping, AdamW.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "app/command.h"
#include "app/common.h"
#include "app/format.h"
#include "app/run_backend.h"
#include "engine/core/check.h"
#include "engine/model/model.h"
#include "engine/model/optim.h"
#include "engine/run/plan.h"
#include "engine/run/step.h"

namespace mt::app {
namespace {

struct BenchArgs {
  RunArgs run;
  int steps = 5;
  int warmup = 2;
  int micro = 0;
  bool as_json = false;
  bool count_only = false;
  bool force_balance = false;
};

// The lr of every bench step (the schedule does not change the work).
constexpr double kBenchLr = 1e-4;

// What MFU and the executed FLOPs count (printed under the table and in --json).
constexpr const char* kMfuConvention =
    "MFU = M x tokens/s / peak with the paper's M = 6 Na + 12 L Dm S FLOPs per token: Na the active non-embedding\n"
    "parameters (embedding and LM head excluded), 12 L Dm S the attention scores QK^T and values PV over all S\n"
    "positions at width Dm, forward and backward. Executed FLOPs count what runs: 2 per multiply-add of every\n"
    "GEMM (LM head, router and the experts' routed rows included) and attention over the causal triangle\n"
    "(4 B H Dh S(S+1)/2 forward, 2.5 times that backward).";

struct Shape {
  const char* what;
  int m, n, k;
};

// The GEMMs of one micro-batch's forward (per rank), the largest by FLOPs first.
Shape largest_gemm(const ModelConfig& mc, int micro, int tp) {
  const int M = micro * mc.seq_len, Dm = mc.d_model, HD = mc.n_heads * mc.head_dim / tp;
  std::vector<Shape> s = {{"qkv", M, 3 * HD, Dm}, {"attn out", M, Dm, HD}, {"lm head", M, mc.vocab_size, Dm}};
  if (mc.d_ffn > 0) {
    s.push_back({"ffn up (w1|w3)", M, 2 * mc.d_ffn / tp, Dm});
    s.push_back({"ffn down", M, Dm, mc.d_ffn / tp});
  }
  std::sort(s.begin(), s.end(), [](const Shape& a, const Shape& b) {
    return double(a.m) * a.n * a.k > double(b.m) * b.n * b.k;
  });
  return s.front();
}

// FLOP/s of ops.gemm (C = A B, row-major, no transposes) on shape s: best of several timed repeats.
template <typename T>
double gemm_rate(Ops<T>& ops, const Shape& s) {
  Device& dev = ops.device();
  const size_t na = size_t(s.m) * s.k, nb = size_t(s.k) * s.n, nc = size_t(s.m) * s.n;
  std::vector<T> ha(na), hb(nb);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 1.f);
  auto draw = [&]() -> T {
    if constexpr (std::is_same_v<T, bf16>) {
      return to_bf16(nd(rng));
    } else {
      return T(nd(rng));
    }
  };
  for (auto& x : ha) x = draw();
  for (auto& x : hb) x = draw();
  T* a = static_cast<T*>(dev.alloc(na * sizeof(T)));
  T* b = static_cast<T*>(dev.alloc(nb * sizeof(T)));
  T* c = static_cast<T*>(dev.alloc(nc * sizeof(T)));
  dev.copy(a, ha.data(), na * sizeof(T), CopyKind::HostToDevice);
  dev.copy(b, hb.data(), nb * sizeof(T), CopyKind::HostToDevice);
  GemmShape g;
  g.m = s.m;
  g.n = s.n;
  g.k = s.k;
  g.lda = s.k;
  g.ldb = s.n;
  g.ldc = s.n;
  const double flops = 2.0 * s.m * s.n * s.k;
  const int reps = std::max(3, int(2e10 / flops));
  double best = 0;
  for (int trial = 0; trial < 4; ++trial) {
    dev.synchronize();
    auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) ops.gemm(c, a, b, g, 1.f, 0.f);
    dev.synchronize();
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (trial > 0) best = std::max(best, flops * reps / dt);
  }
  dev.release(a);
  dev.release(b);
  dev.release(c);
  return best;
}

// The largest max/mean load over the experts of any MoE layer in a step (1: even), 0 without MoE layers.
double max_over_mean_load(const StepStats& st, int n_experts) {
  double worst = 0;
  for (size_t l = 0; n_experts > 0 && (l + 1) * size_t(n_experts) <= st.expert_load.size(); ++l) {
    double mx = 0, sum = 0;
    for (int e = 0; e < n_experts; ++e) {
      mx = std::max(mx, st.expert_load[l * n_experts + e]);
      sum += st.expert_load[l * n_experts + e];
    }
    if (sum > 0) worst = std::max(worst, mx / (sum / n_experts));
  }
  return worst;
}

template <typename T>
json bench(RunConfig cfg, const BenchArgs& a, MoeRouting routing, Ops<T>& ops, const ProcessGrid& grid,
           const BackendInfo& info) {
  using clock = std::chrono::steady_clock;
  if (a.micro > 0) cfg.train.micro_batch_size = a.micro;
  const Plan plan = make_plan(cfg);
  const int S = cfg.model.seq_len;
  const BatchSplit split = split_batch(cfg, plan.batch_size, grid.dp_size);
  Device& dev = ops.device();

  Model<T> model(cfg.model, split.micro, grid, ops);
  Optimizer<T> opt(model, cfg.train, grid, ops, cfg.parallel.zero1 ? ZeroStage::Stage1 : ZeroStage::None);
  StepRunner<T> runner(model, opt, grid, split, dev);
  model.init_params(cfg.train.seed);
  model.set_routing(routing);
  std::vector<int32_t> tokens(size_t(split.local) * (S + 1));
  std::mt19937 rng(uint32_t(cfg.train.seed) + uint32_t(grid.dp_rank));
  std::uniform_int_distribution<int32_t> tok(0, cfg.model.vocab_size - 1);
  for (auto& t : tokens) t = tok(rng);
  Profiler& prof = model.profiler();

  StepStats last;
  auto step = [&](int s) {
    last = runner.run(tokens.data(), s, kBenchLr);
    // stderr: --json owns stdout
    if (const std::string note = info.between_steps(); !note.empty() && grid.is_root()) std::fprintf(stderr, "%s\n", note.c_str());
  };
  for (int s = 1; s <= a.warmup; ++s) step(s);
  // Untimed steps for the rate and the counts, then (unless --count-only) the same number with
  // per-family timing (it synchronises around every section, which would add host syncs).
  prof.set_timing(false);
  prof.reset();
  dev.synchronize();
  const DeviceCounters c0 = dev.counters();
  auto t0 = clock::now();
  for (int s = 1; s <= a.steps; ++s) step(a.warmup + s);
  const DeviceCounters c1 = dev.counters();  // the step ends synchronised: nothing is left queued
  const double seconds = std::chrono::duration<double>(clock::now() - t0).count() / a.steps;
  const double step_flops = prof.total_flops() / a.steps;
  json r;
  r["name"] = cfg.name;
  r["device"] = info.name;
  r["ranks"] = grid.world_size;
  r["layout"] = {{"tp", grid.tp_size}, {"dp", grid.dp_size}, {"ep", grid.ep_size}};
  r["n_params"] = plan.n_params;
  r["n_active"] = plan.n_active;
  r["batch"] = {{"sequences", plan.batch_size}, {"seq_len", S}, {"micro_batch", split.micro},
                {"micro_batches", split.n_micro}};
  r["grad_sync"] = {{"all_reduce", runner.syncs_gradients()}, {"what", runner.describe_sync()}};
  if (cfg.model.moe.enabled) {
    r["routing"] = routing == MoeRouting::ForceBalance ? "force_balance" : "natural";
    r["expert_load_max_over_mean"] = max_over_mean_load(last, cfg.model.moe.n_experts);  // the last timed step
  }
  r["launches_per_step"] = double(c1.launches - c0.launches) / a.steps;
  r["host_syncs_per_step"] = double(c1.host_syncs - c0.host_syncs) / a.steps;
  r["root"] = grid.is_root();
  if (a.count_only) return r;

  prof.set_timing(true);
  prof.reset();
  for (int s = 1; s <= a.steps; ++s) step(a.warmup + a.steps + s);
  prof.set_timing(false);
  const Shape big = largest_gemm(cfg.model, split.micro, grid.tp_size);
  const double gemm = gemm_rate(ops, big);
  const double tokens_per_step = double(plan.batch_size) * S;
  const double model_flops_per_s = plan.flops_per_token * tokens_per_step / seconds / grid.world_size;  // per rank
  r["step_seconds"] = seconds;
  r["tok_per_s"] = tokens_per_step / seconds;
  r["executed_flops_per_step"] = step_flops * grid.world_size;
  r["flops_per_s"] = step_flops / seconds;  // per rank
  r["model_flops_per_token"] = plan.flops_per_token;
  r["model_flops_per_s"] = model_flops_per_s;
  r["peak_flops"] = info.peak_flops;
  r["mfu"] = info.peak_flops > 0 ? model_flops_per_s / info.peak_flops : 0.0;
  r["executed_fraction_of_peak"] = info.peak_flops > 0 ? step_flops / seconds / info.peak_flops : 0.0;
  r["mfu_convention"] = kMfuConvention;
  r["gemm_reference"] = {{"shape", std::string(big.what) + " " + std::to_string(big.m) + "x" + std::to_string(big.n) +
                                       "x" + std::to_string(big.k)},
                         {"flops_per_s", gemm}};
  r["fraction_of_gemm"] = step_flops / seconds / gemm;
  r["peak_memory_bytes"] = double(dev.peak_bytes());
  // The arena of one micro-batch: what micro_batch_size trades against memory.
  r["activation_bytes_per_micro_batch"] = double(model.activation_bytes());
  json fam = json::array();
  double timed = 0;
  for (int f = 0; f < Profiler::kCount; ++f) timed += prof.seconds(OpFamily(f));
  for (int f = 0; f < Profiler::kCount; ++f) {
    const double sec = prof.seconds(OpFamily(f)) / a.steps;
    if (sec <= 0) continue;
    fam.push_back({{"family", op_family_name(OpFamily(f))},
                   {"seconds", sec},
                   {"share", prof.seconds(OpFamily(f)) / timed},
                   {"flops_per_s", prof.flops(OpFamily(f)) > 0 ? prof.flops(OpFamily(f)) / prof.seconds(OpFamily(f)) : 0.0}});
  }
  r["families"] = fam;
  return r;
}

// A count as an integer when it is one, else with one decimal.
std::string fmt_per_step(double x) { return x == std::floor(x) ? fmt_count(x) : fmt_fixed(x, 1); }

// with_convention: the MFU convention under the table (once per output).
void print(const json& r, bool with_convention = true) {
  std::printf("%s on %s, %d rank(s) (tp %d, dp %d, ep %d): N %s, Na %s; batch %d x %d (micro %d x %d per rank)\n",
              r["name"].get<std::string>().c_str(), r["device"].get<std::string>().c_str(), r["ranks"].get<int>(),
              r["layout"]["tp"].get<int>(), r["layout"]["dp"].get<int>(), r["layout"]["ep"].get<int>(),
              fmt_sci(r["n_params"].get<double>()).c_str(), fmt_sci(r["n_active"].get<double>()).c_str(),
              r["batch"]["sequences"].get<int>(), r["batch"]["seq_len"].get<int>(), r["batch"]["micro_batch"].get<int>(),
              r["batch"]["micro_batches"].get<int>());
  std::printf("  step: the trainer's: micro-batches, %s, gradient norm, clipping, AdamW\n",
              r["grad_sync"]["what"].get<std::string>().c_str());
  const double launches = r["launches_per_step"].get<double>(), syncs = r["host_syncs_per_step"].get<double>();
  if (r.contains("routing"))
    std::printf("  routing: %s; expert load max/mean %.2f (worst MoE layer, last step, all ranks)\n",
                r["routing"] == "natural" ? "natural (the router's top-K)"
                                          : "forced balance (round robin: token t's k-th choice is expert (t K + k) mod E)",
                r["expert_load_max_over_mean"].get<double>());
  std::printf("  per step (rank 0): %s launch%s, %s host sync%s\n", fmt_per_step(launches).c_str(), launches == 1 ? "" : "es",
              fmt_per_step(syncs).c_str(), syncs == 1 ? "" : "s");
  if (!r.contains("step_seconds")) return;  // --count-only
  std::printf("  step %.4f s, %s tokens/s\n", r["step_seconds"].get<double>(), fmt_count(r["tok_per_s"].get<double>()).c_str());
  std::printf("  model FLOPs: %.2f GFLOP/s per rank at M = %s FLOPs per token\n", r["model_flops_per_s"].get<double>() / 1e9,
              fmt_sci(r["model_flops_per_token"].get<double>()).c_str());
  std::printf("  executed: %.2f GFLOP/s per rank\n", r["flops_per_s"].get<double>() / 1e9);
  if (r["peak_flops"].get<double>() > 0)
    std::printf("  MFU %.1f%% of %.4g TFLOP/s (peak reference); executed FLOPs %.1f%% of it\n", 100 * r["mfu"].get<double>(),
                r["peak_flops"].get<double>() / 1e12, 100 * r["executed_fraction_of_peak"].get<double>());
  std::printf("  GEMM reference (%s): %.2f GFLOP/s -> the step executes at %.1f%% of it\n",
              r["gemm_reference"]["shape"].get<std::string>().c_str(),
              r["gemm_reference"]["flops_per_s"].get<double>() / 1e9, 100 * r["fraction_of_gemm"].get<double>());
  std::printf("  peak memory %.1f MiB, of which activations %.1f MiB per micro-batch of %d sequences\n",
              r["peak_memory_bytes"].get<double>() / (1 << 20),
              r["activation_bytes_per_micro_batch"].get<double>() / (1 << 20), r["batch"]["micro_batch"].get<int>());
  Table t;
  t.header = {"op family", "ms/step", "share", "GFLOP/s"};
  for (const auto& f : r["families"])
    t.rows.push_back({f["family"].get<std::string>(), fmt_fixed(1e3 * f["seconds"].get<double>(), 2),
           fmt_pct(f["share"].get<double>(), 1),
           f["flops_per_s"].get<double>() > 0 ? fmt_fixed(f["flops_per_s"].get<double>() / 1e9, 1) : "-"});
  std::printf("%s", t.text().c_str());
  if (with_convention) std::printf("%s\n", r["mfu_convention"].get<std::string>().c_str());
}

RegisterCommand reg("bench", 60, [](CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  auto* sub = app.add_subcommand("bench", "Speed of training steps: tokens/s, FLOP/s, MFU, time per op family");
  sub->footer(std::string(kMfuConvention) +
              "\nThe native attention kernel's backward recomputes the scores twice (7 tile products, not 5), which is\n"
              "not counted. Launches and host syncs per step are rank 0's, counted over the timed steps.");
  sub->add_option("config", args->run.config, "run manifest (model, train.batch_size; no data needed)")
      ->required()->check(CLI::ExistingFile);
  sub->add_option("--steps", args->steps, "timed steps (default 5)")->check(CLI::PositiveNumber);
  sub->add_option("--warmup", args->warmup, "untimed steps first (default 2)")->check(CLI::NonNegativeNumber);
  sub->add_option("--micro-batch", args->micro, "sequences per micro-batch (sets train.micro_batch_size; it must divide the per-rank batch)");
  sub->add_flag("--json", args->as_json, "print a JSON object");
  sub->add_flag("--force-balance", args->force_balance,
                "also time the step with the tokens spread evenly over the experts (a round-robin routing_map, same "
                "K), beside natural routing: the speed of perfectly balanced experts (MoE models only)");
  sub->add_flag("--count-only", args->count_only,
                "only the launches and host syncs per step: no timing per op family, no GEMM reference");
  add_run_options(sub, &args->run);
  sub->callback([args] {
    RunConfig cfg = load_run(args->run.config, args->run.overrides);
    MT_INPUT(!args->force_balance || cfg.model.moe.enabled, args->run.config,
             ": --force-balance needs an MoE model (no model.moe)");
    // Natural routing, then with --force-balance the same step with forced balance: {"natural", "force_balance"}.
    json r = with_backend(args->run, cfg.parallel, [&](auto& ops, const ProcessGrid& grid, const BackendInfo& info) {
      json natural = bench(cfg, *args, MoeRouting::Natural, ops, grid, info);
      if (!args->force_balance) return natural;
      return json{{"natural", natural}, {"force_balance", bench(cfg, *args, MoeRouting::ForceBalance, ops, grid, info)},
                  {"root", natural["root"]}};
    }, cfg.model.attention_impl);
    if (!r["root"].get<bool>()) return;
    r.erase("root");
    if (args->as_json) {
      if (r.contains("natural"))
        for (const char* k : {"natural", "force_balance"}) r[k].erase("root");
      std::printf("%s\n", r.dump(2).c_str());
    } else if (r.contains("natural")) {
      print(r["natural"], false);
      std::printf("\n");
      print(r["force_balance"]);
      if (r["natural"].contains("tok_per_s"))
        std::printf("force-balance / natural: %.2fx tokens/s\n",
                    r["force_balance"]["tok_per_s"].get<double>() / r["natural"]["tok_per_s"].get<double>());
    } else {
      print(r);
    }
  });
});

}  // namespace
}  // namespace mt::app
