// Why: DESIGN.md's layout contract on the GPU: a (tp, ep, dp) layout run by several ranks must match the
// single-process run of the same global batch: the loss to 1e-5, the global gradient norm to 1e-4 and,
// after two AdamW steps, the loss again to 1e-4. Every rank also computes the single-process reference
// itself (same GPU, a grid of one rank), so no result has to travel. Ranks on one GPU talk through MPI
// with host staging; with a GPU per rank (and MOETRAIN_COMM=nccl) through NCCL: the tp all-reduces, the
// dp gradient all-reduce and the ep all-to-all. `overlap` reduces the dp gradients as the trainer does,
// bucket by bucket during the backward (GradSync: NCCL's side stream), instead of once afterwards. Run by
// the GPU bundle's run.sh (scripts/gpu_run.sh) and ctest -L gpu as
//   mpirun -np <world> gpu_layout_job <tp> <ep> [fp32|bf16] [overlap]
// bf16 runs the same comparison at bf16 tolerance (loss 2e-2). Prints every group's transport, then
// "... passed" or "... FAILED". Without a GPU it prints "skipped" and exits 77 (ctest's
// SKIP_RETURN_CODE); a GPU that CUDA cannot use is an error (tests/gpu/gpu_probe.h). Exit 1 on a
// mismatch, with the numbers.
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "comm/grid.h"
#include "cuda/backend.h"
#include "engine/core/check.h"
#include "engine/run/config.h"
#include "engine/model/grad_sync.h"
#include "engine/model/model.h"
#include "engine/model/optim.h"
#include "tests/gpu/gpu_probe.h"

namespace {

using namespace mt;

ModelConfig config() {
  json j = {{"model",
             {{"vocab_size", 101}, {"d_model", 64}, {"n_layers", 2}, {"n_heads", 4}, {"head_dim", 16},
              {"d_ffn", 128}, {"seq_len", 32},
              {"moe",
               {{"layout", "1dense"}, {"n_experts", 4}, {"top_k", 2}, {"d_expert", 32}, {"d_shared", 32}}}}},
            {"train", {{"tokens", 1000}}}};
  return parse_run(j, "gpu layout job", ".").model;
}

// A grid of one rank (every group a SelfComm), for the reference inside a multi-rank job.
std::unique_ptr<ProcessGrid> single_grid(Device& dev) {
  auto g = std::make_unique<ProcessGrid>();
  for (auto* c : {&g->world_, &g->tp_, &g->dp_, &g->ep_, &g->edp_}) *c = make_self_comm(dev);
  return g;
}

struct Result {
  std::vector<double> loss;  // mean token loss before each step, and after the last
  std::vector<double> norm;  // gradient norm of each step
};

// How the dp gradients are summed: once after the backward, or bucket by bucket during it.
enum class DpReduce { AfterBackward, Overlapped };

// Two AdamW steps on `grid` (this rank's share of the global batch), then the loss once more.
template <typename T>
Result run(const ModelConfig& cfg, const ProcessGrid& grid, Ops<T>& ops, int global_batch,
           const std::vector<int32_t>& windows, DpReduce reduce) {
  const int S = cfg.seq_len, local = global_batch / grid.dp_size;
  Model<T> model(cfg, local, grid, ops);
  model.init_params(7);
  TrainConfig tc;
  tc.weight_decay = 0.1;
  Optimizer<T> opt(model, tc, grid, ops, ZeroStage::None);
  const MemSpace space = MemSpace::Device;
  const int32_t* mine = windows.data() + size_t(grid.dp_rank) * local * (S + 1);
  Result r;
  auto global_loss = [&](double loss_sum) {
    double buf[2] = {loss_sum, double(local) * S};
    if (grid.dp_size > 1) grid.dp().allreduce_sum(buf, 2, DType::F64, MemSpace::Host);
    return buf[0] / buf[1];
  };
  for (int step = 1; step <= 2; ++step) {
    model.zero_grads();
    using P = acc_t<T>;
    if (reduce == DpReduce::Overlapped) {
      // Small buckets, so that several reductions are in flight on the side stream during the backward.
      GradSync<P> sync({model.grads(ParamGroup::Dense), &model.layout().dense, &grid.dp()},
                       {model.grads(ParamGroup::Expert), &model.layout().expert, &grid.edp()}, space, 4096);
      const MicroBatchStats s = model.forward_backward(mine, local, 1.f / float(grid.dp_size), &sync);
      sync.finish();
      r.loss.push_back(global_loss(s.loss_sum));
    } else {
      const MicroBatchStats s = model.forward_backward(mine, local, 1.f / float(grid.dp_size), nullptr);
      r.loss.push_back(global_loss(s.loss_sum));
      if (grid.dp_size > 1)
        grid.dp().allreduce_sum(model.grads(ParamGroup::Dense), model.numel(ParamGroup::Dense), dtype_of<P>(),
                                space);
      if (grid.edp_size > 1 && model.numel(ParamGroup::Expert))
        grid.edp().allreduce_sum(model.grads(ParamGroup::Expert), model.numel(ParamGroup::Expert), dtype_of<P>(),
                                 space);
    }
    const double norm = opt.grad_norm();
    r.norm.push_back(norm);
    opt.update(step, 1e-2, norm);
  }
  r.loss.push_back(global_loss(model.forward_nll(mine, local)));
  return r;
}

// The single-process reference: the same global batch as dp micro-batches of `local` sequences (the
// balance loss is per micro-batch), gradients accumulated with the same 1/dp scale.
template <typename T>
Result reference(const ModelConfig& cfg, Ops<T>& ops, int global_batch, int dp, const std::vector<int32_t>& windows) {
  auto grid = single_grid(ops.device());
  const int S = cfg.seq_len, local = global_batch / dp;
  Model<T> model(cfg, local, *grid, ops);
  model.init_params(7);
  TrainConfig tc;
  tc.weight_decay = 0.1;
  Optimizer<T> opt(model, tc, *grid, ops, ZeroStage::None);
  Result r;
  for (int step = 1; step <= 3; ++step) {
    if (step <= 2) model.zero_grads();
    double loss = 0;
    for (int m = 0; m < dp; ++m) {
      const int32_t* w = windows.data() + size_t(m) * local * (S + 1);
      loss += step <= 2 ? model.forward_backward(w, local, 1.f / float(dp), nullptr).loss_sum
                        : model.forward_nll(w, local);
    }
    r.loss.push_back(loss / (double(global_batch) * S));
    if (step == 3) break;
    const double norm = opt.grad_norm();
    r.norm.push_back(norm);
    opt.update(step, 1e-2, norm);
  }
  return r;
}

int compare(const Result& a, const Result& b, double loss_tol, double norm_tol, int rank) {
  int bad = 0;
  for (size_t i = 0; i < a.loss.size(); ++i) {
    const double e = std::fabs(a.loss[i] - b.loss[i]) / std::fabs(b.loss[i]);
    const double tol = i == 0 ? loss_tol : std::max(loss_tol, 1e-4);
    if (e > tol) ++bad;
    if (rank == 0)
      std::printf("  loss %zu: layout %.9g  single %.9g  rel %.2e (tol %.0e)%s\n", i, a.loss[i], b.loss[i], e, tol,
                  e > tol ? "  MISMATCH" : "");
  }
  for (size_t i = 0; i < a.norm.size(); ++i) {
    const double e = std::fabs(a.norm[i] - b.norm[i]) / std::fabs(b.norm[i]);
    if (e > norm_tol) ++bad;
    if (rank == 0)
      std::printf("  grad norm %zu: layout %.9g  single %.9g  rel %.2e (tol %.0e)%s\n", i, a.norm[i], b.norm[i], e,
                  norm_tol, e > norm_tol ? "  MISMATCH" : "");
  }
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 3) {
      std::fprintf(stderr, "usage: mpirun -np <world> %s <tp> <ep> [fp32|bf16] [overlap]\n", argv[0]);
      return 2;
    }
    const int tp = std::atoi(argv[1]), ep = std::atoi(argv[2]);
    const std::string precision = argc > 3 ? argv[3] : "fp32";
    const DpReduce reduce = argc > 4 && std::string(argv[4]) == "overlap" ? DpReduce::Overlapped : DpReduce::AfterBackward;
    const int world = init_distributed();
    int rank = 0;
    if (world > 1) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const gputest::GpuPresence gpu = gputest::gpu_presence();
    if (gpu.verdict != gputest::GpuVerdict::Run) {
      const bool skip = gpu.verdict == gputest::GpuVerdict::Skip;
      if (rank == 0)
        std::printf("gpu_layout_job: %s: %s\n", skip ? "no CUDA GPU visible: skipped" : "error", gpu.why.c_str());
      if (world > 1) MPI_Finalize();
      return skip ? gputest::kSkipped : 1;
    }
    const bool bf16 = precision == "bf16";
    auto backend = cuda::open_backend(bf16 ? cuda::Compute::Bf16 : cuda::Compute::Fp32);
    auto grid = cuda::make_grid(tp, ep, *backend);
    if (rank == 0) {
      std::printf("gpu_layout_job: %s, %s, %s, dp reduced %s\n", grid->describe().c_str(), precision.c_str(),
                  backend->describe().c_str(), reduce == DpReduce::Overlapped ? "during the backward" : "after it");
      // The transport of every group (run.sh checks that an NCCL check really ran NCCL).
      std::printf("comm: tp %s; dp %s; ep %s; edp %s\n", grid->tp().describe().c_str(), grid->dp().describe().c_str(),
                  grid->ep().describe().c_str(), grid->edp().describe().c_str());
    }
    const ModelConfig cfg = config();
    const int global_batch = 2 * grid->dp_size;
    std::vector<int32_t> windows(size_t(global_batch) * (cfg.seq_len + 1));
    std::mt19937_64 rng(11);
    for (auto& t : windows) t = int32_t(rng() % uint64_t(cfg.vocab_size));
    int bad = 0;
    if (bf16) {
      const Result a = run(cfg, *grid, backend->ops_bf16(), global_batch, windows, reduce);
      const Result b = reference(cfg, backend->ops_bf16(), global_batch, grid->dp_size, windows);
      bad = compare(a, b, 2e-2, 5e-2, rank);
    } else {
      const Result a = run(cfg, *grid, backend->ops_fp32(), global_batch, windows, reduce);
      const Result b = reference(cfg, backend->ops_fp32(), global_batch, grid->dp_size, windows);
      bad = compare(a, b, 1e-5, 1e-4, rank);
    }
    int any = bad;
    if (world > 1) MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
      std::printf("gpu_layout_job tp %d ep %d dp %d %s: %s\n", tp, ep, grid->dp_size, precision.c_str(),
                  any ? "FAILED" : "passed");
    grid.reset();
    backend.reset();
    if (world > 1) MPI_Finalize();
    return any ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_layout_job: error: %s\n", e.what());
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
}
