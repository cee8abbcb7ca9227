// Why: the body of Optimizer<T> (instantiated for the CPU in optim.cpp and for bf16 in cuda/).
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/core/check.h"
#include "engine/model/optim.h"

namespace mt {

template <typename T>
struct Optimizer<T>::Group {
  ParamGroup id;
  const ParamTable* table;
  Comm* share_comm;  // the ranks that split this buffer's moments under ZeRO (dp or edp)
  size_t begin = 0, end = 0;
  P* m = nullptr;
  P* v = nullptr;
};

template <typename T>
Optimizer<T>::Optimizer(Model<T>& model, const OptimConfig& cfg, const ProcessGrid& grid, Ops<T>& ops,
                        ZeroStage zero)
    : model_(model), cfg_(cfg), grid_(grid), ops_(ops), zero_(zero) {
  for (ParamGroup id : {ParamGroup::Dense, ParamGroup::Expert}) {
    Group g;
    g.id = id;
    g.table = id == ParamGroup::Dense ? &model.layout().dense : &model.layout().expert;
    g.share_comm = id == ParamGroup::Dense ? &grid.dp() : &grid.edp();
    const size_t n = model.numel(id);
    if (zero == ZeroStage::Stage1) {
      const int parts = g.share_comm->size(), r = g.share_comm->rank();
      const size_t per = (n + parts - 1) / parts;
      g.begin = std::min(n, per * r);
      g.end = std::min(n, per * (r + 1));
    } else {
      g.begin = 0;
      g.end = n;
    }
    const size_t len = g.end - g.begin;
    if (len) {
      g.m = static_cast<P*>(ops.device().alloc(len * sizeof(P)));
      g.v = static_cast<P*>(ops.device().alloc(len * sizeof(P)));
    }
    groups_.push_back(g);
  }
}

template <typename T>
Optimizer<T>::~Optimizer() {
  for (auto& g : groups_) {
    if (g.m) ops_.device().release(g.m);
    if (g.v) ops_.device().release(g.v);
  }
}

template <typename T>
double Optimizer<T>::grad_norm() {
  // Dense: tp-sharded tensors differ across tp ranks, replicated ones are equal. One call (one pass, one
  // wait on a GPU) for all: the dense tensors one by one into their group, the expert buffer whole.
  enum { kSharded, kReplicated, kExpert, kGroups };
  std::vector<SquaresSpan<P>> spans;
  P* gd = model_.grads(ParamGroup::Dense);
  for (const TensorInfo& t : groups_[0].table->tensors)
    spans.push_back({gd + t.offset, t.numel, t.tp_sharded ? int(kSharded) : int(kReplicated)});
  if (model_.numel(ParamGroup::Expert))
    spans.push_back({model_.grads(ParamGroup::Expert), model_.numel(ParamGroup::Expert), int(kExpert)});
  double sums[kGroups];
  ops_.sum_squares_groups(sums, kGroups, spans.data(), int(spans.size()));
  const double dense_sharded = sums[kSharded], dense_replicated = sums[kReplicated], expert = sums[kExpert];
  // One reduction over tp (both sums), then the experts over ep.
  double buf[2] = {dense_sharded, expert};
  if (grid_.tp_size > 1) grid_.tp().allreduce_sum(buf, 2, DType::F64, MemSpace::Host);
  if (grid_.ep_size > 1) grid_.ep().allreduce_sum(&buf[1], 1, DType::F64, MemSpace::Host);
  return std::sqrt(buf[0] + dense_replicated + buf[1]);
}

template <typename T>
void Optimizer<T>::update(int step, double lr, double norm) {
  AdamWArgs a;
  a.lr = float(lr);
  a.beta1 = float(cfg_.beta1);
  a.beta2 = float(cfg_.beta2);
  a.eps = float(cfg_.eps);
  a.step = step;
  a.grad_scale = (cfg_.grad_clip > 0 && norm > cfg_.grad_clip) ? float(cfg_.grad_clip / norm) : 1.f;
  for (Group& g : groups_) {
    P* params = model_.params(g.id);
    P* grads = model_.grads(g.id);
    // This rank's share as runs of equal decay (each tensor's own, neighbours with the same merged):
    // one call over the whole share.
    std::vector<DecayRun> runs;
    for (const TensorInfo& t : g.table->tensors) {
      const size_t b = std::max(g.begin, t.offset), e = std::min(g.end, t.offset + t.numel);
      if (b >= e) continue;
      const float wd = t.decay == Decay::Yes ? float(cfg_.weight_decay) : 0.f;
      if (!runs.empty() && runs.back().weight_decay == wd) runs.back().end = e - g.begin;
      else runs.push_back({e - g.begin, wd});
    }
    if (!runs.empty()) {
      a.runs = runs.data();
      a.n_runs = int(runs.size());
      ops_.adamw(params + g.begin, grads + g.begin, g.m, g.v, runs.back().end, a);
    }
    if (zero_ == ZeroStage::Stage1 && g.share_comm->size() > 1) {
      // Every rank broadcasts its updated share to the others.
      const size_t n = model_.numel(g.id);
      const int parts = g.share_comm->size();
      const size_t per = (n + parts - 1) / parts;
      const MemSpace space = ops_.device().space();
      for (int r = 0; r < parts; ++r) {
        const size_t b = std::min(n, per * r), e = std::min(n, per * (r + 1));
        if (e > b) g.share_comm->broadcast(params + b, e - b, dtype_of<P>(), r, space);
      }
    }
  }
  model_.refresh_compute_weights();
}

template <typename T>
size_t Optimizer<T>::share_begin(ParamGroup g) const {
  return groups_[int(g)].begin;
}
template <typename T>
size_t Optimizer<T>::share_end(ParamGroup g) const {
  return groups_[int(g)].end;
}
template <typename T>
typename Optimizer<T>::P* Optimizer<T>::exp_avg(ParamGroup g) {
  return groups_[int(g)].m;
}
template <typename T>
typename Optimizer<T>::P* Optimizer<T>::exp_avg_sq(ParamGroup g) {
  return groups_[int(g)].v;
}

}  // namespace mt
