// Why: `moetrain bench` reports launches and host syncs per step from the CPU backend as the GPU's
// structure (issue 24), and scripts/bench_counts.sh measures the H100 manifests at small widths. Both
// rest on two facts checked here: the CPU counts as engine/core/device.h says (an op call one launch,
// an op marked HostSync in engine/ops/ops.h and a device-to-host copy also a host sync, every zero and copy a launch,
// synchronize() a host sync), and a step's counts depend on its structure (layers, experts, K,
// micro-batches, the LM head's chunks), not on its widths.
#include <catch2/catch.hpp>
#include <random>
#include <vector>

#include "comm/grid.h"
#include "engine/cpu/counting_ops.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/model/model.h"
#include "engine/model/optim.h"
#include "engine/run/config.h"
#include "engine/run/step.h"

using mt::json;

namespace {

struct Delta {
  int64_t launches, host_syncs;
};

// The counters' change over fn().
template <typename F>
Delta counted(mt::Device& dev, F&& fn) {
  const mt::DeviceCounters before = dev.counters();
  fn();
  return {dev.counters().launches - before.launches, dev.counters().host_syncs - before.host_syncs};
}

bool operator==(const Delta& a, const Delta& b) { return a.launches == b.launches && a.host_syncs == b.host_syncs; }
std::ostream& operator<<(std::ostream& os, const Delta& d) {
  return os << d.launches << " launches, " << d.host_syncs << " host syncs";
}

// One step's counts (after a first step) of a manifest's model at the given widths.
Delta step_counts(const json& model, int batch, int micro) {
  json j = {{"model", model}, {"train", {{"tokens", 1e6}, {"batch_size", batch}, {"micro_batch_size", micro}}}};
  const mt::RunConfig cfg = mt::parse_run(j, "test", ".");
  mt::CpuOps<float> kernels;
  mt::CountingOps<float> ops(kernels);
  auto grid = mt::make_grid(1, 1, ops.device());
  const mt::BatchSplit split = mt::split_batch(cfg, batch, 1);
  mt::Model<float> m(cfg.model, split.micro, *grid, ops);
  mt::Optimizer<float> opt(m, cfg.train, *grid, ops, mt::ZeroStage::None);
  mt::StepRunner<float> runner(m, opt, *grid, split, ops.device());
  m.init_params(1);
  std::vector<int32_t> tokens(size_t(batch) * size_t(cfg.model.seq_len + 1));
  std::mt19937 rng(2);
  for (auto& t : tokens) t = int32_t(rng() % uint32_t(cfg.model.vocab_size));
  runner.run(tokens.data(), 1, 1e-3);
  return counted(ops.device(), [&] { runner.run(tokens.data(), 2, 1e-3); });
}

}  // namespace

TEST_CASE("CPU counts: an op call is one launch, a synchronising op or a device-to-host copy also a host sync",
          "[counters]") {
  mt::CpuOps<float> kernels;
  mt::CountingOps<float> ops(kernels);
  mt::Device& dev = ops.device();
  std::vector<float> a(16, 1.f), b(16, 2.f), c(16, 0.f);
  const mt::GemmShape s = mt::GemmShape::nn(4, 4, 4);
  CHECK(counted(dev, [&] { ops.gemm(c.data(), a.data(), b.data(), s, 1.f, 0.f); }) == Delta{1, 0});
  // The CPU's gemm_acc calls its gemm: still one launch.
  CHECK(counted(dev, [&] { ops.gemm_acc(c.data(), a.data(), b.data(), s, 1.f, 1.f); }) == Delta{1, 0});
  CHECK(counted(dev, [&] { ops.add_inplace(c.data(), a.data(), 16); }) == Delta{1, 0});
  CHECK(counted(dev, [&] { ops.sum(c.data(), 16); }) == Delta{1, 1});
  CHECK(counted(dev, [&] { ops.sum_squares(c.data(), 16); }) == Delta{1, 1});
  double sums[2];
  const mt::SquaresSpan<float> spans[2] = {{a.data(), 16, 0}, {b.data(), 16, 1}};
  CHECK(counted(dev, [&] { ops.sum_squares_groups(sums, 2, spans, 2); }) == Delta{1, 1});
  // The MoE ops keep their sizes and statistics on the device: no host sync.
  std::vector<int32_t> routing_map = {0, 1, 1, 0}, slot(4), row_src(4);
  std::vector<int64_t> offsets(3), counts(2), bad(1, 0);
  std::vector<double> losses(2);
  const mt::RouteDims rd{2, 2, 2};
  CHECK(counted(dev, [&] {
          ops.moe_route_plan(slot.data(), row_src.data(), offsets.data(), bad.data(), routing_map.data(), rd, -1);
        }) == Delta{1, 0});
  CHECK(counted(dev, [&] {
          ops.router_stats(losses.data(), counts.data(), bad.data(), routing_map.data(), a.data(), nullptr, rd);
        }) == Delta{1, 0});
  CHECK(counted(dev, [&] { dev.zero(c.data(), 64); }) == Delta{1, 0});
  CHECK(counted(dev, [&] { dev.copy(c.data(), a.data(), 64, mt::CopyKind::HostToDevice); }) == Delta{1, 0});
  CHECK(counted(dev, [&] { dev.copy(c.data(), a.data(), 64, mt::CopyKind::DeviceToDevice); }) == Delta{1, 0});
  CHECK(counted(dev, [&] { dev.copy(c.data(), a.data(), 64, mt::CopyKind::DeviceToHost); }) == Delta{1, 1});
  CHECK(counted(dev, [&] { dev.synchronize(); }) == Delta{0, 1});
}

TEST_CASE("a step's launches and host syncs depend on its structure, not on its widths", "[counters]") {
  // Two layers, 1dense MoE with 4 experts of which each token takes all 4 (no expert is ever empty),
  // 2 micro-batches, the same vocabulary and sequence length (the LM head's chunks): at two widths.
  auto model = [](int dm, int heads, int dh, int ffn, int de) {
    return json{{"vocab_size", 64}, {"d_model", dm}, {"n_layers", 2}, {"n_heads", heads}, {"head_dim", dh},
                {"d_ffn", ffn}, {"seq_len", 16},
                {"moe", {{"layout", "1dense"}, {"n_experts", 4}, {"top_k", 4}, {"d_expert", de}, {"d_shared", de}}}};
  };
  const Delta narrow = step_counts(model(4, 1, 4, 4, 4), 4, 2);
  const Delta wide = step_counts(model(16, 2, 8, 24, 12), 4, 2);
  CHECK(narrow == wide);
  // And they do change with the structure: a third micro-batch.
  const Delta more = step_counts(model(4, 1, 4, 4, 4), 6, 2);
  CHECK(more.launches > narrow.launches);
}
