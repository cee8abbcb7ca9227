// Why: see backend.h. The GPU of a rank is its local rank (ranks on the same node, by MPI's shared-memory
// split) modulo the GPUs it sees; when there are more local ranks than GPUs they share, and NCCL (which
// refuses two ranks on one GPU) gives way to MPI with host staging. NCCL communicators for the groups
// are split from one world communicator; each group's color is its lowest world rank, gathered over the
// group's MPI comm, so the grid's rank arithmetic lives only in comm/grid.cpp.
#include "cuda/backend.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "comm/job.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/cuda_ops.h"
#include "cuda/device.h"
#include "cuda/nccl_comm.h"

extern "C" int mt_cuda_device_count();

namespace mt::cuda {

struct Backend::Impl {
  Compute compute;
  int ranks_per_gpu = 1;
  std::unique_ptr<CudaDevice> device;
  std::unique_ptr<Context> ctx;
  std::unique_ptr<CudaOps<float>> fp32;
  std::unique_ptr<CudaOps<mt::bf16>> bf16;
};

Backend::Backend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Backend::~Backend() = default;

std::string Backend::describe() const {
  const DeviceInfo& d = impl_->device->info();
  return str(impl_->device->name(), " (", d.sm_count, " SMs, sm_", d.major, d.minor, ") ",
             impl_->compute == Compute::Bf16 ? "bf16" : "fp32",
             impl_->ranks_per_gpu > 1 ? str(", shared by ", impl_->ranks_per_gpu, " ranks") : std::string(),
             impl_->ctx->attention() == AttentionImpl::Cudnn ? ", cuDNN attention" : "");
}

double Backend::peak_flops() const {
  const DeviceInfo& d = impl_->device->info();
  // Ranks that share a GPU each get their share of it.
  return datasheet_peak_flops(d.name, d.sm_count, d.major, impl_->compute) / impl_->ranks_per_gpu;
}

Compute Backend::compute() const { return impl_->compute; }

void Backend::set_attention(AttentionImpl impl) { impl_->ctx->set_attention(impl); }
void Backend::set_native_attention(NativeAttention which) { impl_->ctx->set_native_attention(which); }
Ops<bf16>& Backend::ops_bf16() { return *impl_->bf16; }
Ops<float>& Backend::ops_fp32() { return *impl_->fp32; }
Device& Backend::device() { return *impl_->device; }
int Backend::ranks_per_gpu() const { return impl_->ranks_per_gpu; }

double datasheet_peak_flops(const std::string& name, int sm_count, int cc_major, Compute compute) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  const bool bf16 = compute == Compute::Bf16;
  // Dense (no sparsity) datasheet numbers: bf16 tensor core, fp32 FMA.
  struct Known {
    const char* tag;
    double bf16, fp32;
    int sms;
  };
  static const Known known[] = {
      {"H100 PCIe", 756e12, 51.2e12, 114}, {"H100 NVL", 835e12, 60e12, 132}, {"H100", 989.4e12, 66.9e12, 132},
      {"H200", 989.4e12, 66.9e12, 132},    {"H800", 989.4e12, 66.9e12, 132}, {"GH200", 989.4e12, 66.9e12, 132},
      {"A100", 312e12, 19.5e12, 108},      {"A800", 312e12, 19.5e12, 108},   {"L40S", 362e12, 91.6e12, 142},
      {"A10", 125e12, 31.2e12, 72},
  };
  if (has("PCIe") && has("H100")) return bf16 ? known[0].bf16 : known[0].fp32;
  for (const Known& k : known)
    if (has(k.tag)) return bf16 ? k.bf16 : k.fp32;
  // Unknown: scale the same generation's flagship by the SM count (an estimate, for MFU only).
  if (cc_major == 9) return (bf16 ? 989.4e12 : 66.9e12) * sm_count / 132.0;
  if (cc_major == 8) return (bf16 ? 312e12 : 19.5e12) * sm_count / 108.0;
  return 0.0;
}

std::unique_ptr<Backend> open_backend(Compute compute) {
  const int count = mt_cuda_device_count();
  MT_INPUT(count > 0, "--device cuda: no GPU is visible to the CUDA driver");
  int local_rank = 0, local_size = 1;
  if (init_distributed() > 1) {
    const NodePlace node = node_place();
    local_rank = node.rank;
    local_size = node.size;
  }
  auto impl = std::make_unique<Backend::Impl>();
  impl->compute = compute;
  impl->ranks_per_gpu = (local_size + count - 1) / count;
  impl->device = std::make_unique<CudaDevice>(local_rank % count);
  impl->ctx = std::make_unique<Context>(*impl->device);
  impl->fp32 = std::make_unique<CudaOps<float>>(*impl->ctx);
  impl->bf16 = std::make_unique<CudaOps<mt::bf16>>(*impl->ctx);
  return std::make_unique<Backend>(std::move(impl));
}

namespace {

enum class Transport { Nccl, Mpi };

Transport choose_transport(const Backend& backend) {
  const char* env = std::getenv("MOETRAIN_COMM");
  const std::string want = env ? env : "";
  MT_INPUT(want.empty() || want == "nccl" || want == "mpi", "MOETRAIN_COMM=", want, ": expected nccl or mpi");
  if (want == "mpi") return Transport::Mpi;
  if (want == "nccl") {
    MT_INPUT(backend.ranks_per_gpu() == 1, "MOETRAIN_COMM=nccl, but ", backend.ranks_per_gpu(),
             " ranks share each GPU and NCCL needs one GPU per rank (use MOETRAIN_COMM=mpi)");
    return Transport::Nccl;
  }
  return backend.ranks_per_gpu() == 1 ? Transport::Nccl : Transport::Mpi;
}

// The lowest world rank in `group` (every member gets the same value): a color that names the group.
int group_color(Comm& group, int world_rank) {
  std::vector<int32_t> ranks(group.size());
  const int32_t mine = world_rank;
  group.allgather(&mine, ranks.data(), 1, DType::I32, MemSpace::Host);
  return int(*std::min_element(ranks.begin(), ranks.end()));
}

}  // namespace

std::unique_ptr<ProcessGrid> make_grid(int tp, int ep, Backend& backend) {
  auto& impl = backend.impl();
  // The MPI grid (device buffers staged through the host) or, on one rank, SelfComms.
  auto g = mt::make_grid(tp, ep, *impl.device);
  if (g->world_size == 1) return g;
  std::unique_ptr<Comm>* comms[] = {&g->world_, &g->tp_, &g->dp_, &g->ep_, &g->edp_};
  const char* labels[] = {"world", "tp group", "dp group", "ep group", "edp group"};

  if (choose_transport(backend) == Transport::Mpi) {
    for (auto* c : comms)
      if ((*c)->size() > 1) *c = make_bf16_sum_comm(std::move(*c), *impl.ctx);
    return g;
  }

  // NCCL: the world communicator from a unique id that rank 0 broadcasts, then one split per group.
  ncclUniqueId id;
  if (g->world_rank == 0) MT_NCCL_CHECK(ncclGetUniqueId(&id));
  g->world().broadcast(&id, sizeof(id), DType::U8, 0, MemSpace::Host);
  ncclComm_t world = nullptr;
  MT_CUDA_CHECK(cudaSetDevice(impl.device->index()));
  MT_NCCL_CHECK(ncclCommInitRank(&world, g->world_size, id, g->world_rank));
  auto order = make_nccl_order(*impl.device);
  // Split every group of more than one rank (the same groups on every rank, in the same order, as
  // ncclCommSplit is collective over the world), then replace the world itself.
  for (int i = 1; i < 5; ++i) {
    Comm& group = **comms[i];
    if (group.size() == 1) continue;
    const int color = group_color(group, g->world_rank);
    ncclComm_t sub = nullptr;
    MT_NCCL_CHECK(ncclCommSplit(world, color, group.rank(), &sub, nullptr));
    *comms[i] = make_nccl_comm(sub, std::move(*comms[i]), *impl.device, order, labels[i]);
  }
  *comms[0] = make_nccl_comm(world, std::move(*comms[0]), *impl.device, order, labels[0]);
  return g;
}

}  // namespace mt::cuda
