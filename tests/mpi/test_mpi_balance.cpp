// Why: the balance loss and the z-loss, and what they add to the router weights' gradients, must not
// depend on how the global batch is cut: into 1 or 4 micro-batches (gradient accumulation), over dp 1
// or 2, ep 1 or 2, tp 1 or 2 (DESIGN.md "The model": f_i and p_i are counted per balance group of
// sequences, which every layout keeps whole). The trainer's layout tests compare the training loss
// and the weights, where these small terms hide under the cross-entropy; this test compares them
// alone, in float64: each run's router gradient with both coefficients on minus the same run's with
// both off is the auxiliary losses' gradient. Every rank runs the single-process reference itself
// (a grid of SelfComms); the layouts run on the 2 ranks of the job.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "comm/grid.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/model/model.h"
#include "engine/run/config.h"

using mt::json;

namespace {

constexpr int kSeqs = 8;  // the global batch

mt::ModelConfig config(double balance_coef, double z_coef) {
  json moe = {{"layout", "full"},       {"n_experts", 4},           {"top_k", 2}, {"balance_group", 1},
              {"d_expert", 6},          {"d_shared", 4},            {"balance_coef", balance_coef},
              {"z_loss_coef", z_coef}};
  json j = {{"model", {{"vocab_size", 11}, {"d_model", 8}, {"n_layers", 2}, {"n_heads", 2}, {"head_dim", 4},
                       {"d_ffn", 12}, {"seq_len", 6}, {"moe", moe}}},
            {"train", {{"tokens", 1000}}}};
  return mt::parse_run(j, "test", ".").model;
}

struct AuxNumbers {
  double balance = 0, z = 0;         // mean over the global batch
  std::vector<double> router_grad;   // every MoE layer's router weight gradient, concatenated
};

// One step's forward and backward of the global batch on `grid`: this rank's dp share of the
// sequences in micro-batches of `micro`, the loss scaled as the trainer does (1 / (micro-batches x
// dp)); the numbers summed over dp.
AuxNumbers run(const mt::ModelConfig& cfg, const mt::ProcessGrid& grid, const std::vector<int32_t>& windows,
               int micro) {
  mt::CpuOps<double> ops;
  const int S = cfg.seq_len, local = kSeqs / grid.dp_size, n_micro = local / micro;
  mt::Model<double> model(cfg, micro, grid, ops);
  model.init_params(11);
  // Sharper routing than the init's (the router is replicated: the same on every layout).
  for (const auto& t : model.layout().dense.tensors)
    if (t.name.find(".moe.router.") != std::string::npos)
      for (size_t i = 0; i < t.numel; ++i) model.params(mt::ParamGroup::Dense)[t.offset + i] *= 40;
  model.zero_grads();
  AuxNumbers a;
  for (int mb = 0; mb < n_micro; ++mb) {
    const size_t first = size_t(grid.dp_rank) * local + size_t(mb) * micro;
    auto s = model.forward_backward(windows.data() + first * (S + 1), micro, 1.0f / float(n_micro * grid.dp_size),
                                    nullptr);
    model.read_moe_stats(&s, 1);
    a.balance += s.balance_loss / n_micro;
    a.z += s.z_loss / n_micro;
  }
  for (const auto& t : model.layout().dense.tensors)
    if (t.name.find(".moe.router.") != std::string::npos)
      a.router_grad.insert(a.router_grad.end(), model.grads(mt::ParamGroup::Dense) + t.offset,
                           model.grads(mt::ParamGroup::Dense) + t.offset + t.numel);
  if (grid.dp_size > 1) {
    std::vector<double> sums = a.router_grad;
    sums.push_back(a.balance);
    sums.push_back(a.z);
    grid.dp().allreduce_sum(sums.data(), sums.size(), mt::DType::F64, mt::MemSpace::Host);
    a.z = sums.back() / grid.dp_size;
    sums.pop_back();
    a.balance = sums.back() / grid.dp_size;
    sums.pop_back();
    a.router_grad = sums;
  }
  return a;
}

// The auxiliary losses (coefficients on) and their router gradient (on minus off).
AuxNumbers aux(const mt::ProcessGrid& grid, const std::vector<int32_t>& windows, int micro) {
  AuxNumbers on = run(config(0.1, 0.01), grid, windows, micro);
  const AuxNumbers off = run(config(0, 0), grid, windows, micro);
  for (size_t i = 0; i < on.router_grad.size(); ++i) on.router_grad[i] -= off.router_grad[i];
  return on;
}

// max |a - b| / max |a| over the router gradient; relative differences of the two losses.
struct Diff {
  double balance = 0, z = 0, grad = 0;
};
Diff compare(const AuxNumbers& ref, const AuxNumbers& other) {
  REQUIRE(ref.router_grad.size() == other.router_grad.size());
  Diff d;
  d.balance = std::fabs(ref.balance - other.balance) / std::fabs(ref.balance);
  d.z = std::fabs(ref.z - other.z) / std::fabs(ref.z);
  double amax = 0, dmax = 0;
  for (size_t i = 0; i < ref.router_grad.size(); ++i) {
    amax = std::max(amax, std::fabs(ref.router_grad[i]));
    dmax = std::max(dmax, std::fabs(ref.router_grad[i] - other.router_grad[i]));
  }
  d.grad = dmax / amax;
  return d;
}

}  // namespace

TEST_CASE("balance loss, z-loss and their router gradients are the same for every micro-batch split and layout",
          "[mpi][moe]") {
  mt::CpuOps<double> host;
  // Every rank: the single-process reference, one micro-batch of the whole batch.
  mt::ProcessGrid self;
  for (auto* c : {&self.world_, &self.tp_, &self.dp_, &self.ep_, &self.edp_}) *c = mt::make_self_comm(host.device());
  std::vector<int32_t> windows(size_t(kSeqs) * (config(0, 0).seq_len + 1));
  std::mt19937 rng(5);
  for (auto& t : windows) t = int32_t(rng() % 11);
  const int world_rank = mt::make_grid(1, 1, host.device())->world_rank;
  const AuxNumbers ref = aux(self, windows, kSeqs);
  REQUIRE(ref.balance > 0);
  REQUIRE(ref.z > 0);

  struct Case {
    const char* name;
    int tp, ep, micro;  // micro: sequences per micro-batch on a rank
    bool self;          // one process (the split only)
  };
  const Case cases[] = {{"4 micro-batches", 1, 1, 2, true},
                        {"dp 2", 1, 1, 4, false},
                        {"dp 2, 2 micro-batches", 1, 1, 2, false},
                        {"ep 2", 1, 2, 4, false},
                        {"tp 2", 2, 1, 8, false},
                        {"tp 2, 4 micro-batches", 2, 1, 2, false}};
  for (const Case& c : cases) {
    std::unique_ptr<mt::ProcessGrid> grid;
    if (!c.self) grid = mt::make_grid(c.tp, c.ep, host.device());
    const Diff d = compare(ref, aux(c.self ? self : *grid, windows, c.micro));
    if (world_rank == 0)
      std::printf("balance invariance: %-22s balance %.2e  z %.2e  router grad %.2e (max relative differences)\n",
                  c.name, d.balance, d.z, d.grad);
    INFO(c.name << ": balance " << d.balance << ", z " << d.z << ", router gradient " << d.grad);
    CHECK(d.balance < 1e-12);
    CHECK(d.z < 1e-12);
    CHECK(d.grad < 1e-10);
  }
}
