// Why: `moetrain bench` prints kernel launches and host syncs per step (engine/core/device.h
// DeviceCounters) so that the structure of a step can be measured where no GPU runs. The CPU backend
// counts them here, in one place: CountingOps wraps any Ops<T> (the CPU's in app/run_backend.h) and
// counts every op call as one launch, and the ops documented "Synchronises" in engine/model/ops.h
// (router_stats, moe_route_plan, sum_squares, sum_squares_groups, sum) also as a host sync, into the
// wrapped backend's device counters. The device counts its own zero and copy calls, the comms their collectives. (The
// CUDA backend counts at its launch sites instead: one op may launch several kernels there.)
#pragma once

#include "engine/model/ops.h"

namespace mt {

template <typename T>
class CountingOps : public Ops<T> {
 public:
  using P = acc_t<T>;
  explicit CountingOps(Ops<T>& inner) : inner_(inner), counters_(inner.device().counters()) {}

  Device& device() override { return inner_.device(); }

// One launch, and for a synchronising op one host sync, then the wrapped op.
#define MT_LAUNCH(call) \
  {                     \
    launch();           \
    return inner_.call; \
  }
#define MT_LAUNCH_SYNC(call) \
  {                          \
    launch();                \
    ++counters_.host_syncs;  \
    return inner_.call;      \
  }

  void gemm(T* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) override
      MT_LAUNCH(gemm(c, a, b, s, alpha, beta))
  void gemm_acc(P* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) override
      MT_LAUNCH(gemm_acc(c, a, b, s, alpha, beta))
  void embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int Dm) override
      MT_LAUNCH(embedding_forward(out, tokens, wte, N, Dm))
  void embedding_backward(P* dwte, const T* dout, const int32_t* tokens, int N, int Dm, int V) override
      MT_LAUNCH(embedding_backward(dwte, dout, tokens, N, Dm, V))
  void rmsnorm_forward(T* out, P* rstd, const T* inp, const T* weight, int N, int Dm, float eps) override
      MT_LAUNCH(rmsnorm_forward(out, rstd, inp, weight, N, Dm, eps))
  void rmsnorm_backward(T* dinp, P* dweight, const T* dout, const T* inp, const T* weight, const P* rstd, int N,
                        int Dm) override MT_LAUNCH(rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, Dm))
  void attention_forward(T* out, P* lse, const T* qkv, const float* slopes, const AttnDims& d) override
      MT_LAUNCH(attention_forward(out, lse, qkv, slopes, d))
  void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const P* lse, const float* slopes,
                          const AttnDims& d) override MT_LAUNCH(attention_backward(dqkv, dout, qkv, out, lse, slopes, d))
  void swiglu_forward(T* out, const T* h13, int N, int F) override MT_LAUNCH(swiglu_forward(out, h13, N, F))
  void swiglu_backward(T* dh13, const T* dout, const T* h13, int N, int F) override
      MT_LAUNCH(swiglu_backward(dh13, dout, h13, N, F))
  void router_forward(int32_t* routing_map, P* gates, P* probs, P* lse, const P* logits, const RouteDims& d,
                      GateNorm norm) override MT_LAUNCH(router_forward(routing_map, gates, probs, lse, logits, d, norm))
  void router_backward(P* dlogits, const P* dgates, const P* prob_grad, const P* probs, const P* lse,
                       const int32_t* routing_map, const P* gates, float z_scale, const RouteDims& d,
                       GateNorm norm) override
      MT_LAUNCH(router_backward(dlogits, dgates, prob_grad, probs, lse, routing_map, gates, z_scale, d, norm))
  void router_stats(int64_t* counts_host, double* prob_sum_host, const int32_t* routing_map, const P* probs,
                    const RouteDims& d) override MT_LAUNCH_SYNC(router_stats(counts_host, prob_sum_host, routing_map, probs, d))
  int moe_route_plan(int32_t* slot, int32_t* row_src, int64_t* tokens_per_expert_host, const int32_t* routing_map,
                     const RouteDims& d, int capacity) override
      MT_LAUNCH_SYNC(moe_route_plan(slot, row_src, tokens_per_expert_host, routing_map, d, capacity))
  void moe_permute(T* out, const T* inp, const int32_t* row_src, const PermuteDims& d) override
      MT_LAUNCH(moe_permute(out, inp, row_src, d))
  void moe_permute_backward(T* dinp, const T* dout, const int32_t* slot, const DispatchDims& d) override
      MT_LAUNCH(moe_permute_backward(dinp, dout, slot, d))
  void moe_combine(T* out, const T* expert_out, const P* gates, const int32_t* slot, const DispatchDims& d) override
      MT_LAUNCH(moe_combine(out, expert_out, gates, slot, d))
  void moe_combine_backward(T* dexpert_out, P* dgates, const T* dout, const T* expert_out, const P* gates,
                            const int32_t* slot, const DispatchDims& d) override
      MT_LAUNCH(moe_combine_backward(dexpert_out, dgates, dout, expert_out, gates, slot, d))
  void cross_entropy(P* losses, T* dlogits, const T* logits, const int32_t* targets, float dloss, int N,
                     int V) override MT_LAUNCH(cross_entropy(losses, dlogits, logits, targets, dloss, N, V))
  void add_inplace(T* x, const T* y, size_t n) override MT_LAUNCH(add_inplace(x, y, n))
  void to_compute(T* out, const P* in, size_t n) override MT_LAUNCH(to_compute(out, in, n))
  double sum_squares(const P* x, size_t n) override MT_LAUNCH_SYNC(sum_squares(x, n))
  double sum(const P* x, size_t n) override MT_LAUNCH_SYNC(sum(x, n))
  void sum_squares_groups(double* sums_host, int n_groups, const SquaresSpan<P>* spans_host, int n_spans) override
      MT_LAUNCH_SYNC(sum_squares_groups(sums_host, n_groups, spans_host, n_spans))
  void adamw(P* param, const P* grad, P* m, P* v, size_t n, const AdamWArgs& args) override
      MT_LAUNCH(adamw(param, grad, m, v, n, args))

#undef MT_LAUNCH
#undef MT_LAUNCH_SYNC

 private:
  void launch() { ++counters_.launches; }
  Ops<T>& inner_;
  DeviceCounters& counters_;
};

}  // namespace mt
