// Why: one MoE layer as Router -> Dispatcher -> Experts -> Combine (plus the shared expert), forward
// and backward, with communication only inside dispatch and combine (the all-to-all over the ep
// group). Names follow Megatron: routing_map, probs, tokens_per_expert, input_splits /
// output_splits, capacity.
//
// Balance loss (DESIGN.md): E * sum_i f_i p_i with f_i = share of this micro-batch's tokens that chose
// expert i (sum_i f_i = K) and p_i = mean router probability of i; the gradient flows through p_i
// only. Its statistics are LOCAL: the micro-batch of this rank, before any capacity drop. A micro-batch
// is the same set of sequences under every (tp, ep, dp) layout, so the loss is layout-independent.
//
// Tensor parallelism: the router is replicated over tp (every tp rank routes identically); experts and
// the shared expert are split over their hidden dimension, so the layer's output and the gradient of
// its input are partial sums that the caller / this class all-reduce over tp.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "comm/grid.h"
#include "engine/model/arena.h"
#include "engine/model/experts.h"
#include "engine/model/linear.h"
#include "engine/ops/ops.h"
#include "engine/model/profile.h"
#include "engine/model/tensors.h"

namespace mt {

struct MoeDims {
  int N = 0;        // tokens of the micro-batch on this rank
  int Dm = 0;
  int E = 0;        // experts (global)
  int El = 0;       // experts on this rank (E / ep)
  int K = 0;
  int Del = 0;      // expert hidden on this rank (d_expert / tp)
  int Dsl = 0;      // shared hidden on this rank (d_shared / tp)
  int ep = 1;
  int capacity = -1;  // per expert per micro-batch; -1 dropless
  GateNorm norm = GateNorm::None;
  float balance_coef = 0;
  float z_coef = 0;

  // Rows this rank's experts can receive in one micro-batch, what the receiving buffers are sized for:
  // a token's K choices are distinct experts, so each of the ep senders' N tokens sends at most
  // min(K, El) rows to one rank; with a capacity, each sender keeps at most `capacity` rows per expert.
  // (Never less than the N K rows a rank sends, which ep = 1 keeps in the same buffers.)
  size_t recv_rows() const {
    size_t r = size_t(N) * ep * size_t(std::min(K, El));
    if (capacity >= 0) r = std::min(r, size_t(ep) * El * size_t(capacity));
    return r;
  }
};

// Buffers shared by every MoE layer (used within one layer's forward or backward only).
template <typename T>
struct MoeScratch {
  using P = acc_t<T>;
  T* rows_a = nullptr;    // (Rr_cap, Dm)
  T* rows_b = nullptr;    // (Rr_cap, Dm)
  T* rows_c = nullptr;    // (R_cap, Dm)
  T* dh13 = nullptr;      // (max(Rr_cap, N), 2 * max(Del, Dsl))
  T* dact = nullptr;      // (max(Rr_cap, N), max(Del, Dsl))
  T* tokens = nullptr;    // (N, Dm)
  P* dgate = nullptr;     // (N, K)
  P* dlogits = nullptr;   // (N, E)
  T* dlogits_t = nullptr; // (N, E)
  P* prob_grad = nullptr; // (E)
  P* dinp_acc = nullptr;  // (Rr_cap, Dm) when T is not P: expert input grads summed in P, rounded once

  void request(Arena& a, const MoeDims& d) {
    const size_t R = size_t(d.N) * d.K, Rr = d.recv_rows(), rows = std::max<size_t>(Rr, d.N);
    const size_t H = size_t(std::max(d.Del, d.Dsl));
    a.request(&rows_a, Rr * d.Dm);
    a.request(&rows_b, Rr * d.Dm);
    a.request(&rows_c, R * d.Dm);
    a.request(&dh13, rows * 2 * H);
    a.request(&dact, rows * H);
    a.request(&tokens, size_t(d.N) * d.Dm);
    a.request(&dgate, R);
    a.request(&dlogits, size_t(d.N) * d.E);
    a.request(&dlogits_t, size_t(d.N) * d.E);
    a.request(&prob_grad, size_t(d.E));
    if constexpr (!std::is_same_v<T, P>) a.request(&dinp_acc, Rr * d.Dm);
  }
};

struct MoeLayerStats {
  double balance_loss = 0;  // E * sum_i f_i p_i
  double z_loss = 0;        // mean_t lse_t^2
  std::vector<int64_t> tokens_per_expert;  // (E) choices before any drop
  int64_t dropped = 0;
};

template <typename T>
class MoeLayer {
 public:
  using P = acc_t<T>;

  MoeLayer(const MoeDims& d, Ops<T>& ops, const ProcessGrid& grid, Profiler& prof, Arena& arena,
           MoeScratch<T>& scratch)
      : d_(d), ops_(ops), grid_(grid), prof_(prof), s_(scratch) {
    const size_t N = d.N, R = N * d.K, Rr = d.recv_rows();
    arena.request(&logits_, N * d.E);
    arena.request(&probs_, N * d.E);
    arena.request(&lse_, N);
    arena.request(&routing_map_, R);
    arena.request(&gates_, R);
    arena.request(&slot_, R);
    arena.request(&row_src_, R);
    arena.request(&send_, R * d.Dm);
    arena.request(&h13_, Rr * 2 * d.Del);
    arena.request(&act_, Rr * d.Del);
    if (d.ep > 1) {
      arena.request(&recv_sorted_, Rr * d.Dm);
      arena.request(&sort_idx_, Rr);
      arena.request(&unsort_idx_, Rr);
    }
    arena.request(&y_back_, R * d.Dm);
    if (d.Dsl > 0) {
      arena.request(&sh13_, N * 2 * d.Dsl);
      arena.request(&shact_, N * d.Dsl);
    }
    tokens_per_expert_.resize(d.E);
    counts_.resize(d.E);
    prob_sum_.resize(d.E);
    offsets_.resize(d.El + 1);
    recv_counts_.resize(size_t(d.ep) * d.El);
    input_splits_.resize(d.ep);
    output_splits_.resize(d.ep);
  }

  // out (N, Dm) = routed experts + shared expert of ln2 (N, Dm); a partial sum over tp.
  void forward(T* out, const T* ln2, const LayerTensors<T>& w, MoeLayerStats* stats) {
    const int N = d_.N, Dm = d_.Dm, E = d_.E, K = d_.K;
    {
      Profiler::Scope ps(prof_, OpFamily::Router);
      linear_forward_acc(ops_, prof_, OpFamily::Router, logits_, ln2, w.router, N, Dm, E);
      ops_.router_forward(routing_map_, gates_, probs_, lse_, logits_, {N, E, K}, d_.norm);
      ops_.router_stats(counts_.data(), prob_sum_.data(), routing_map_, probs_, {N, E, K});
      double bal = 0;
      for (int i = 0; i < E; ++i) bal += (double(counts_[i]) / N) * (prob_sum_[i] / N);
      stats->balance_loss = double(E) * bal;
      stats->z_loss = d_.z_coef > 0 ? ops_.sum_squares(lse_, size_t(N)) / N : 0.0;
      stats->tokens_per_expert = counts_;
    }
    {
      Profiler::Scope ps(prof_, OpFamily::Dispatch);
      R_ = ops_.moe_route_plan(slot_, row_src_, tokens_per_expert_.data(), routing_map_, {N, E, K}, d_.capacity);
      stats->dropped = int64_t(N) * K - R_;
      ops_.moe_permute(send_, ln2, row_src_, {R_, Dm});
      if (d_.ep > 1)
        exchange_counts_and_dispatch();
      else
        local_offsets();
    }
    const T* expert_in = d_.ep > 1 ? recv_sorted_ : send_;
    T* expert_out = d_.ep > 1 ? s_.rows_b : y_back_;
    {
      Profiler::Scope ps(prof_, OpFamily::Experts);
      experts_forward(ops_, expert_out, h13_, act_, expert_in, w.ex_w1, w.ex_w3, w.ex_w2, offsets_.data(), d_.El,
                           Dm, d_.Del);
      prof_.add_flops(OpFamily::Experts, 2.0 * Rr_ * Dm * 3.0 * d_.Del);
    }
    {
      Profiler::Scope ps(prof_, OpFamily::Dispatch);
      if (d_.ep > 1) {
        // Back to (source, expert) order, then home to the source ranks.
        ops_.moe_permute(s_.rows_a, s_.rows_b, unsort_idx_, {int(Rr_), Dm});
        alltoallv_rows(s_.rows_a, output_splits_, y_back_, input_splits_);
      }
      ops_.moe_combine(out, y_back_, gates_, slot_, {N, K, Dm});
    }
    if (d_.Dsl > 0) {
      Profiler::Scope ps(prof_, OpFamily::Linear);
      linear_forward(ops_, prof_, OpFamily::Linear, sh13_, ln2, w.sh_w13, N, Dm, 2 * d_.Dsl);
      ops_.swiglu_forward(shact_, sh13_, N, d_.Dsl);
      linear_forward(ops_, prof_, OpFamily::Linear, out, shact_, w.sh_w2, N, d_.Dsl, Dm, 1.f);  // out += shared(ln2)
    }
  }

  // d_ln2 (N, Dm) = the gradient of this layer's input, complete (all-reduced over tp); gradients of
  // the router, shared and routed experts accumulate into g. dy (N, Dm) is the output's gradient.
  void backward(T* d_ln2, const T* dy, const T* ln2, const LayerTensors<T>& w, const LayerTensors<P>& g,
                float loss_scale) {
    const int N = d_.N, Dm = d_.Dm, E = d_.E, K = d_.K;
    // Shared expert: d_ln2 = its (partial) input gradient.
    if (d_.Dsl > 0) {
      Profiler::Scope ps(prof_, OpFamily::Linear);
      linear_backward(ops_, prof_, OpFamily::Linear, s_.dact, g.sh_w2, dy, shact_, w.sh_w2, N, d_.Dsl, Dm);
      ops_.swiglu_backward(s_.dh13, s_.dact, sh13_, N, d_.Dsl);
      linear_backward(ops_, prof_, OpFamily::Linear, d_ln2, g.sh_w13, s_.dh13, ln2, w.sh_w13, N, Dm, 2 * d_.Dsl);
    }
    T* d_send = s_.rows_c;
    {
      Profiler::Scope ps(prof_, OpFamily::Dispatch);
      ops_.moe_combine_backward(s_.rows_c, s_.dgate, dy, y_back_, gates_, slot_, {N, K, Dm});
      if (grid_.tp_size > 1) {
        Profiler::Scope pc(prof_, OpFamily::TpComm);
        grid_.tp().allreduce_sum(s_.dgate, size_t(N) * K, dtype_of<P>(), space());
      }
      if (d_.ep > 1) {
        // d(y_back) travels like the dispatched tokens, then into expert order.
        alltoallv_rows(s_.rows_c, input_splits_, s_.rows_a, output_splits_);
        ops_.moe_permute(s_.rows_b, s_.rows_a, sort_idx_, {int(Rr_), Dm});
      }
    }
    {
      Profiler::Scope ps(prof_, OpFamily::Experts);
      const T* dout = d_.ep > 1 ? s_.rows_b : s_.rows_c;
      T* dinp = d_.ep > 1 ? s_.rows_a : s_.rows_b;
      const T* expert_in = d_.ep > 1 ? recv_sorted_ : send_;
      experts_backward(ops_, dinp, g.ex_w1, g.ex_w3, g.ex_w2, s_.dh13, s_.dact, s_.dinp_acc, dout, expert_in, h13_,
                       act_, w.ex_w1, w.ex_w3, w.ex_w2, offsets_.data(), d_.El, Dm, d_.Del);
      prof_.add_flops(OpFamily::Experts, 4.0 * Rr_ * Dm * 3.0 * d_.Del);
      d_send = dinp;
    }
    {
      Profiler::Scope ps(prof_, OpFamily::Dispatch);
      if (d_.ep > 1) {
        ops_.moe_permute(s_.rows_b, s_.rows_a, unsort_idx_, {int(Rr_), Dm});
        alltoallv_rows(s_.rows_b, output_splits_, s_.rows_c, input_splits_);
        d_send = s_.rows_c;
      }
      if (d_.Dsl > 0) {
        ops_.moe_permute_backward(s_.tokens, d_send, slot_, {N, K, Dm});
        ops_.add_inplace(d_ln2, s_.tokens, size_t(N) * Dm);
      } else {
        ops_.moe_permute_backward(d_ln2, d_send, slot_, {N, K, Dm});
      }
    }
    if (grid_.tp_size > 1) {
      Profiler::Scope pc(prof_, OpFamily::TpComm);
      grid_.tp().allreduce_sum(d_ln2, size_t(N) * Dm, dtype_of<T>(), space());
    }
    {
      // Router (replicated over tp: added after the reduction). d loss / d probs[t, j] from the
      // balance loss = coef * E * f_j / N (scaled like the loss).
      Profiler::Scope ps(prof_, OpFamily::Router);
      std::vector<P> pg(E);
      for (int j = 0; j < E; ++j)
        pg[j] = P(double(d_.balance_coef) * loss_scale * E * (double(counts_[j]) / N) / N);
      ops_.device().copy(s_.prob_grad, pg.data(), sizeof(P) * E, CopyKind::HostToDevice);
      const float z_scale = d_.z_coef * loss_scale / float(N);
      ops_.router_backward(s_.dlogits, s_.dgate, s_.prob_grad, probs_, lse_, routing_map_, gates_, z_scale, {N, E, K},
                           d_.norm);
      ops_.to_compute(s_.dlogits_t, s_.dlogits, size_t(N) * E);
      linear_backward(ops_, prof_, OpFamily::Router, d_ln2, g.router, s_.dlogits_t, ln2, w.router, N, Dm, E, 1.f);
    }
  }

 private:
  MemSpace space() const { return ops_.device().space(); }


  // Rows to ep peers: send_splits[j] rows from `send` (in rank order) to rank j; recv likewise.
  void alltoallv_rows(const T* send, const std::vector<int64_t>& send_splits, T* recv,
                      const std::vector<int64_t>& recv_splits) {
    const int ep = d_.ep;
    std::vector<size_t> sc(ep), sd(ep), rc(ep), rd(ep);
    size_t so = 0, ro = 0;
    for (int j = 0; j < ep; ++j) {
      sc[j] = size_t(send_splits[j]) * d_.Dm;
      sd[j] = so;
      so += sc[j];
      rc[j] = size_t(recv_splits[j]) * d_.Dm;
      rd[j] = ro;
      ro += rc[j];
    }
    grid_.ep().alltoallv(send, sc.data(), sd.data(), recv, rc.data(), rd.data(), dtype_of<T>(), space());
  }

  // Exchanges tokens_per_expert over the ep group, sends each rank the rows for its experts, and sorts
  // the received rows from (source rank, expert) order into (expert, source rank) order.
  void exchange_counts_and_dispatch() {
    const int ep = d_.ep, El = d_.El;
    // tokens_per_expert_ is in global expert order: block j is rank j's experts.
    grid_.ep().alltoall_host(tokens_per_expert_.data(), recv_counts_.data(), size_t(El), DType::I64);
    for (int j = 0; j < ep; ++j) {
      input_splits_[j] = 0;
      output_splits_[j] = 0;
      for (int e = 0; e < El; ++e) {
        input_splits_[j] += tokens_per_expert_[size_t(j) * El + e];
        output_splits_[j] += recv_counts_[size_t(j) * El + e];
      }
    }
    Rr_ = std::accumulate(output_splits_.begin(), output_splits_.end(), int64_t(0));
    MT_CHECK(size_t(Rr_) <= d_.recv_rows(), "MoE: ", Rr_, " rows received, buffers hold ", d_.recv_rows());
    alltoallv_rows(send_, input_splits_, s_.rows_a, output_splits_);
    // Received row of (source j, expert e, i-th) -> sorted position.
    std::vector<int32_t> sort_idx(Rr_), unsort_idx(Rr_);
    std::vector<int64_t> src_base(ep + 1, 0);
    for (int j = 0; j < ep; ++j) src_base[j + 1] = src_base[j] + output_splits_[j];
    int64_t pos = 0;
    offsets_[0] = 0;
    for (int e = 0; e < El; ++e) {
      for (int j = 0; j < ep; ++j) {
        int64_t start = src_base[j];
        for (int e2 = 0; e2 < e; ++e2) start += recv_counts_[size_t(j) * El + e2];
        for (int64_t i = 0; i < recv_counts_[size_t(j) * El + e]; ++i) {
          sort_idx[pos] = int32_t(start + i);
          unsort_idx[start + i] = int32_t(pos);
          ++pos;
        }
      }
      offsets_[e + 1] = pos;
    }
    auto& dev = ops_.device();
    dev.copy(sort_idx_, sort_idx.data(), sizeof(int32_t) * Rr_, CopyKind::HostToDevice);
    dev.copy(unsort_idx_, unsort_idx.data(), sizeof(int32_t) * Rr_, CopyKind::HostToDevice);
    ops_.moe_permute(recv_sorted_, s_.rows_a, sort_idx_, {int(Rr_), d_.Dm});
  }

  // Without expert parallelism the permuted rows are the experts' input as they are.
  void local_offsets() {
    offsets_[0] = 0;
    for (int e = 0; e < d_.El; ++e) offsets_[e + 1] = offsets_[e] + tokens_per_expert_[e];
    Rr_ = R_;
  }

  MoeDims d_;
  Ops<T>& ops_;
  const ProcessGrid& grid_;
  Profiler& prof_;
  MoeScratch<T>& s_;
  // Saved for the backward (arena).
  P* logits_ = nullptr;      // (N, E)
  P* probs_ = nullptr;       // (N, E)
  P* lse_ = nullptr;         // (N)
  int32_t* routing_map_ = nullptr;  // (N, K)
  P* gates_ = nullptr;       // (N, K)
  int32_t* slot_ = nullptr;  // (N, K)
  int32_t* row_src_ = nullptr;  // (R)
  T* send_ = nullptr;        // (R, Dm) tokens in expert order
  T* recv_sorted_ = nullptr; // (Rr, Dm) received tokens in (local expert, source) order   [ep > 1]
  int32_t* sort_idx_ = nullptr;    // (Rr)   [ep > 1]
  int32_t* unsort_idx_ = nullptr;  // (Rr)   [ep > 1]
  T* h13_ = nullptr;         // (Rr, 2 Del)
  T* act_ = nullptr;         // (Rr, Del)
  T* y_back_ = nullptr;      // (R, Dm) expert outputs back in this rank's expert order
  T* sh13_ = nullptr;        // (N, 2 Dsl)
  T* shact_ = nullptr;       // (N, Dsl)
  // Host state of the current micro-batch.
  int R_ = 0;                // rows kept on this rank (sent)
  int64_t Rr_ = 0;           // rows received for this rank's experts
  std::vector<int64_t> tokens_per_expert_;  // (E) kept per expert
  std::vector<int64_t> counts_;             // (E) chosen per expert (before drops)
  std::vector<double> prob_sum_;            // (E)
  std::vector<int64_t> offsets_;            // (El + 1) rows per local expert
  std::vector<int64_t> recv_counts_;        // (ep, El) rows received from each source per local expert
  std::vector<int64_t> input_splits_;       // (ep) rows sent to each ep rank
  std::vector<int64_t> output_splits_;      // (ep) rows received from each ep rank
};

}  // namespace mt
