// Why: one MoE layer, read top to bottom: router -> dispatch -> experts -> combine, plus the shared
// expert; the backward in reverse. Communication lives only in the Dispatcher (dispatcher.h: the
// all-to-all over the ep group); names follow Megatron: routing_map, probs, tokens_per_expert,
// capacity.
//
// Waiting for the device: none with ep = 1; with ep > 1 the dispatcher's one copy of the all-to-all
// sizes. The balance and z-loss statistics, the expert counts and the routing plan's offsets stay in a
// device MoeRecord that the step reads once (Model::read_moe_stats).
//
// Balance loss (DESIGN.md): the mean over balance groups (model.moe.balance_group consecutive
// sequences; 0, the default: the whole micro-batch) of E * sum_i f_i p_i, with f_i = share of the
// group's tokens that chose expert i (sum_i f_i = K) and p_i = the group's mean router probability of
// i; the gradient flows through p_i only. Its statistics are LOCAL: the group's tokens on this rank,
// before any capacity drop. A group is the same set of sequences whole on one rank under every
// micro-batch split and (tp, ep, dp) layout, so with a fixed group size the loss and its gradient do
// not depend on them (tests/mpi/test_mpi_balance.cpp). The router's statistics and backward run once
// per group.
//
// Tensor parallelism (the rule for every block, model_impl.h): a layer NEVER reduces over tp itself;
// the block does, in one place. The router is replicated over tp (every tp rank routes identically);
// the routed and shared experts are split over their hidden dimension, so this layer's output, the
// gradient of its input and the gradient of its gates are partial sums over tp. The block reduces the
// output after forward(); in the backward it calls backward() (partial input gradient and dgates()),
// reduces both, then router_backward(), which adds the replicated router's input gradient after the
// reduction.
#pragma once

#include <memory>
#include <vector>

#include "comm/grid.h"
#include "engine/model/arena.h"
#include "engine/model/dispatcher.h"
#include "engine/model/experts.h"
#include "engine/model/linear.h"
#include "engine/ops/ops.h"
#include "engine/model/profile.h"
#include "engine/model/tensors.h"

namespace mt {

// Buffers shared by every MoE layer (used within one layer's forward or backward only).
template <typename T>
struct MoeScratch {
  using P = acc_t<T>;
  DispatchScratch<T> dispatch;
  ExpertScratch<T> experts;     // the routed experts' backward, then the shared expert's:
                                //   dh13 (max(Rr, N), 2 max(Del, Dsl)), dact (max(Rr, N), max(Del, Dsl))
  T* d_routed = nullptr;        // (N, Dm) the routed experts' part of the input gradient   [Dsl > 0]
  P* dgates = nullptr;          // (N, K)
  P* dlogits = nullptr;         // (N, E)
  T* dlogits_t = nullptr;       // (N, E)

  void request(Arena& a, const MoeDims& d) {
    const size_t Rr = d.recv_rows(), rows = std::max<size_t>(Rr, d.N);
    const size_t H = size_t(std::max(d.Del, d.Dsl));
    dispatch.request(a, d);
    a.request(&experts.dh13, rows * 2 * H);
    a.request(&experts.dact, rows * H);
    if (d.Dsl > 0) a.request(&d_routed, size_t(d.N) * d.Dm);
    a.request(&dgates, size_t(d.N) * d.K);
    a.request(&dlogits, size_t(d.N) * d.E);
    a.request(&dlogits_t, size_t(d.N) * d.E);
  }
};

// What the model asks of a layer's routing besides the router's top-K.
template <typename P>
struct RouteControl {
  // (E, device) the expert bias of aux-loss-free balancing: added to the router's probabilities for
  // the top-K only (not in the gates; it carries no gradient). Null: none.
  const P* select_bias = nullptr;
  // (N, K, device) a routing_map that replaces the router's choice (MoeRouting::ForceBalance, model.h;
  // the gates stay the router's top-K probabilities). Null: the router's choice.
  const int32_t* forced_map = nullptr;
};

template <typename T>
class MoeLayer {
 public:
  using P = acc_t<T>;

  MoeLayer(const MoeDims& d, Ops<T>& ops, const ProcessGrid& grid, Profiler& prof, Arena& arena,
           MoeScratch<T>& scratch)
      : d_(d), ops_(ops), prof_(prof), s_(scratch),
        dispatcher_(make_dispatcher(d, ops, grid, prof, arena, scratch.dispatch)) {
    const size_t N = d.N, Rr = d.recv_rows();
    arena.request(&logits_, N * d.E);
    arena.request(&probs_, N * d.E);
    arena.request(&lse_, N);
    arena.request(&routing_map_, N * d.K);
    arena.request(&gates_, N * d.K);
    arena.request(&experts_.h13, Rr * 2 * d.Del);
    arena.request(&experts_.act, Rr * d.Del);
    if (d.Dsl > 0) {
      arena.request(&sh13_, N * 2 * d.Dsl);
      arena.request(&shact_, N * d.Dsl);
    }
  }

  // out (N, Dm) = routed experts + shared expert of ln2 (N, Dm); a partial sum over tp. The layer's
  // numbers go to `record` (device memory; its statistics are skipped when record.losses is null).
  void forward(T* out, const T* ln2, const LayerTensors<T>& w, const MoeRecord& record,
               const RouteControl<P>& control) {
    route(ln2, w, record, control);
    const ExpertRows<T> rows = dispatcher_->dispatch(ln2, routing_map_, record);
    {
      Profiler::Scope ps(prof_, OpFamily::Experts);
      experts_forward(ops_, rows.output, experts_, rows.input, expert_weights(w), rows.offsets, expert_dims(rows));
      // (ep = 1: the rows are known when the step reads the record; Model::read_moe_stats counts them.)
      const int64_t known = dispatcher_->expert_rows_on_host();
      if (known >= 0) prof_.add_flops(OpFamily::Experts, 2.0 * known * d_.Dm * 3.0 * d_.Del);
    }
    dispatcher_->combine(out, gates_);
    if (d_.Dsl > 0) shared_forward(out, ln2, w);
    expert_rows_ = rows;
    record_ = record;
  }

  // FLOPs of the routed experts per kept row in a forward and backward (the ep = 1 count's factor).
  double expert_flops_per_row() const { return 6.0 * d_.Dm * 3.0 * d_.Del; }

  // d_ln2 (N, Dm) = the gradient of this layer's input through the routed and shared experts, a partial
  // sum over tp, and dgates() likewise; gradients of the shared and routed experts accumulate into g.
  // dy (N, Dm) is the output's gradient.
  void backward(T* d_ln2, const T* dy, const T* ln2, const LayerTensors<T>& w, const LayerTensors<P>& g) {
    if (d_.Dsl > 0) shared_backward(d_ln2, dy, ln2, w, g);
    const ExpertGrads<T> grads = dispatcher_->combine_backward(s_.dgates, dy, gates_);
    {
      Profiler::Scope ps(prof_, OpFamily::Experts);
      const ExpertRows<T>& rows = expert_rows_;
      experts_backward(ops_, grads.d_input, ExpertWeights<P>{g.ex_w1, g.ex_w3, g.ex_w2}, s_.experts, grads.d_output,
                       rows.input, ExpertActivations<const T>{experts_.h13, experts_.act}, expert_weights(w),
                       rows.offsets, expert_dims(rows));
      const int64_t known = dispatcher_->expert_rows_on_host();
      if (known >= 0) prof_.add_flops(OpFamily::Experts, 4.0 * known * d_.Dm * 3.0 * d_.Del);
    }
    if (d_.Dsl > 0) {
      dispatcher_->dispatch_backward(s_.d_routed);
      Profiler::Scope ps(prof_, OpFamily::Dispatch);
      ops_.add_inplace(d_ln2, s_.d_routed, size_t(d_.N) * d_.Dm);
    } else {
      dispatcher_->dispatch_backward(d_ln2);
    }
  }

  // (N, K) the gradient of the gates from backward(), which the block reduces over tp.
  P* dgates() { return s_.dgates; }

  // d_ln2 (N, Dm) += the router's input gradient (after the block's tp reduction of d_ln2 and dgates);
  // the router's weight gradient accumulates into g. The balance loss's gradient and the z-loss's are
  // scaled like the loss (loss_scale).
  void router_backward(T* d_ln2, const T* ln2, const LayerTensors<T>& w, const LayerTensors<P>& g,
                       float loss_scale) {
    const int N = d_.N, Dm = d_.Dm, E = d_.E, K = d_.K, G = d_.group, groups = N / G;
    Profiler::Scope ps(prof_, OpFamily::Router);
    MT_CHECK(record_.counts, "MoE backward after a forward without statistics");
    // d loss / d probs[t, j] from the balance loss = coef * E * f_j / G / groups for the tokens t of a
    // group (scaled like the loss), with f_j = counts[j] / G of the group from the forward's record.
    const double balance_scale = double(d_.balance_coef) * loss_scale * E / groups;
    const float z_scale = d_.z_coef * loss_scale / float(N);
    for (int grp = 0; grp < groups; ++grp) {
      const size_t t = size_t(grp) * G;
      ops_.router_backward(s_.dlogits + t * E, s_.dgates + t * K, record_.counts + size_t(grp) * E, balance_scale,
                           probs_ + t * E, lse_ + t, routing_map_ + t * K, gates_ + t * K, z_scale, {G, E, K}, d_.norm);
    }
    ops_.to_compute(s_.dlogits_t, s_.dlogits, size_t(N) * E);
    linear_backward(ops_, prof_, OpFamily::Router, d_ln2, g.router, s_.dlogits_t, ln2, w.router, N, Dm, E, 1.f);
  }

 private:
  // Router logits, probs, the top-K routing_map and gates, and the balance / z-loss statistics (into
  // the record, on the device).
  void route(const T* ln2, const LayerTensors<T>& w, const MoeRecord& record, const RouteControl<P>& control) {
    const int N = d_.N, E = d_.E, K = d_.K, G = d_.group;
    Profiler::Scope ps(prof_, OpFamily::Router);
    linear_forward_acc(ops_, prof_, OpFamily::Router, logits_, ln2, w.router, N, d_.Dm, E);
    ops_.router_forward(routing_map_, gates_, probs_, lse_, logits_, control.select_bias, {N, E, K}, d_.norm);
    if (control.forced_map)
      ops_.device().copy(routing_map_, control.forced_map, sizeof(int32_t) * N * K, CopyKind::DeviceToDevice);
    if (record.losses)
      for (int grp = 0; grp < N / G; ++grp) {
        const size_t t = size_t(grp) * G;
        ops_.router_stats(record.losses + 3 * size_t(grp), record.counts + size_t(grp) * E, record.bad,
                          routing_map_ + t * K, probs_ + t * E, d_.z_coef > 0 ? lse_ + t : nullptr, {G, E, K});
      }
  }

  // out (N, Dm) += shared(ln2).
  void shared_forward(T* out, const T* ln2, const LayerTensors<T>& w) {
    const int N = d_.N, Dm = d_.Dm, F = d_.Dsl;
    Profiler::Scope ps(prof_, OpFamily::Linear);
    linear_forward(ops_, prof_, OpFamily::Linear, sh13_, ln2, w.sh_w13, N, Dm, 2 * F);
    ops_.swiglu_forward(shact_, sh13_, N, F);
    linear_forward(ops_, prof_, OpFamily::Linear, out, shact_, w.sh_w2, N, F, Dm, 1.f);
  }

  // d_ln2 (N, Dm) = the shared expert's input gradient (written).
  void shared_backward(T* d_ln2, const T* dy, const T* ln2, const LayerTensors<T>& w, const LayerTensors<P>& g) {
    const int N = d_.N, Dm = d_.Dm, F = d_.Dsl;
    Profiler::Scope ps(prof_, OpFamily::Linear);
    linear_backward(ops_, prof_, OpFamily::Linear, s_.experts.dact, g.sh_w2, dy, shact_, w.sh_w2, N, F, Dm);
    ops_.swiglu_backward(s_.experts.dh13, s_.experts.dact, sh13_, N, F);
    linear_backward(ops_, prof_, OpFamily::Linear, d_ln2, g.sh_w13, s_.experts.dh13, ln2, w.sh_w13, N, Dm, 2 * F);
  }

  ExpertDims expert_dims(const ExpertRows<T>& rows) const { return {d_.El, d_.Dm, d_.Del, rows.rows}; }
  static ExpertWeights<const T> expert_weights(const LayerTensors<T>& w) { return {w.ex_w1, w.ex_w3, w.ex_w2}; }

  MoeDims d_;
  Ops<T>& ops_;
  Profiler& prof_;
  MoeScratch<T>& s_;
  std::unique_ptr<Dispatcher<T>> dispatcher_;
  // Saved for the backward (arena).
  P* logits_ = nullptr;             // (N, E)
  P* probs_ = nullptr;              // (N, E)
  P* lse_ = nullptr;                // (N)
  int32_t* routing_map_ = nullptr;  // (N, K)
  P* gates_ = nullptr;              // (N, K)
  ExpertActivations<T> experts_;    // h13 (Rr, 2 Del), act (Rr, Del)
  T* sh13_ = nullptr;               // (N, 2 Dsl)
  T* shact_ = nullptr;              // (N, Dsl)
  // The current micro-batch's.
  ExpertRows<T> expert_rows_;       // the dispatch of the forward
  MoeRecord record_;                // the forward's record (counts for the balance gradient)
};

}  // namespace mt
