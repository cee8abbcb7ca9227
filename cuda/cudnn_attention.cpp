// Why: see cudnn_attention.h. Layouts: cuDNN sees every tensor as (B, H, rows, cols) with strides, so
// q, k^T, v (forward) and v^T (backward) are strided views into qkv (B, S, 3, H, Dh), and out / dout
// (B, S, H, Dh) and lse (B, H, S) are used in place: no copies. Score(i, j) = q_i . k_j / sqrt(Dh) +
// slope_h (j - i) for j <= i, as ops.h, with slope_h read from the slopes tensor (this rank's heads, so
// right under tp: cuDNN's own ALiBi would compute slopes for the local head count).
//
// The graphs are built as the cuDNN frontend builds its SDPA graphs (the runtime-fusion engines match
// that pattern and refuse others); facts taken from the frontend's public source:
// - index and comparison tensors typed as it types them: GEN_INDEX computes and outputs INT32, the
//   column - row distance is an INT32 SUB, the causal CMP_GE computes and outputs BOOLEAN; ALiBi and the
//   causal mask each generate their own indices; the masked value is the lowest float before cuDNN 9.10
//   and -inf from then on;
// - the probabilities that feed a matmul are bf16 (the I/O type): P before P V, and in the backward P
//   (from exp(s - lse)) and its transpose before P^T dO; dS stays fp32 (the intermediate type), so do its
//   transpose and dP;
// - the backward's row sums D = rowsum(dO * O) are virtual, multiplied by a by-value 1 (as is dP), as
//   the frontend does for graphs without dropout;
// - dQ is accumulated in an fp32 tensor of its own (B, H, S, Dh), F16x16 reordering, zeroed before each
//   run and copied to dQ by an IDENTITY; k comes in once, as k^T, and is transposed back in the graph.
#include "cuda/cudnn_attention.h"

#include <cudnn_graph.h>

#include <array>
#include <deque>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/context.h"

#define MT_CUDNN_CHECK(call)                                                                           \
  do {                                                                                                 \
    cudnnStatus_t mt_cudnn_s_ = (call);                                                                \
    if (mt_cudnn_s_ != CUDNN_STATUS_SUCCESS) ::mt::cuda::cudnn_fail(mt_cudnn_s_, #call, __FILE__, __LINE__); \
  } while (0)

namespace mt::cuda {

namespace {

[[noreturn]] void cudnn_fail(cudnnStatus_t s, const char* statement, const char* file, int line) {
  char last[512] = {0};
  cudnnGetLastErrorString(last, sizeof last);
  fail("cuDNN call failed", statement, file, line,
       str(cudnnGetErrorString(s), last[0] ? str(" (", last, ")") : std::string(),
           "; model.attention_impl \"native\" avoids cuDNN"));
}

// One backend descriptor, destroyed with the object.
class Desc {
 public:
  explicit Desc(cudnnBackendDescriptorType_t type) { MT_CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &d_)); }
  ~Desc() {
    if (d_) cudnnBackendDestroyDescriptor(d_);
  }
  Desc(Desc&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  Desc& operator=(Desc&&) = delete;

  template <typename V>
  Desc& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, const V* values, int64_t count = 1) {
    MT_CUDNN_CHECK(cudnnBackendSetAttribute(d_, name, type, count, values));
    return *this;
  }
  Desc& set_desc(cudnnBackendAttributeName_t name, const Desc& other) {
    cudnnBackendDescriptor_t o = other.get();
    return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, &o);
  }
  Desc& finalize() {
    MT_CUDNN_CHECK(cudnnBackendFinalize(d_));
    return *this;
  }
  cudnnBackendDescriptor_t get() const { return d_; }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

using Dims = std::array<int64_t, 4>;

// The tensors the graphs read and write (unique ids in the variant pack); virtual ones count from 100.
enum Uid : int64_t { kQ = 1, kKt, kV, kVt, kO, kStats, kSlopes, kScale, kNegInf, kOne, kDO, kDQ, kDK, kDV, kDQAcc };

}  // namespace

struct CudnnAttention::Plan {
  std::deque<Desc> keep;  // every descriptor of the graph (the plan refers to them; stable addresses)
  std::unique_ptr<Desc> exec;
  int64_t workspace = 0;
  int64_t next_virtual = 100;

  Desc& add(Desc&& d) {
    keep.push_back(std::move(d));
    return keep.back();
  }
  enum class Value { InMemory, ByValue };
  const Desc& tensor(int64_t uid, cudnnDataType_t type, const Dims& dims, const Dims& strides,
                     Value value = Value::InMemory, cudnnBackendTensorReordering_t reorder = CUDNN_TENSOR_REORDERING_NONE) {
    Desc d(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const int64_t align = 16;
    const bool is_virtual = uid >= 100, by_value = value == Value::ByValue;
    d.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, &type)
        .set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, dims.data(), 4)
        .set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, strides.data(), 4)
        .set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, &uid)
        .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, &align)
        .set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, &is_virtual);
    if (by_value) d.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, &by_value);
    if (reorder != CUDNN_TENSOR_REORDERING_NONE)
      d.set(CUDNN_ATTR_TENSOR_REORDERING_MODE, CUDNN_TYPE_TENSOR_REORDERING_MODE, &reorder);
    return add(std::move(d.finalize()));
  }
  static Dims packed(const Dims& dims) { return {dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1}; }
  // A virtual tensor (fp32 unless said), packed strides unless given.
  const Desc& virt(const Dims& dims, cudnnDataType_t type = CUDNN_DATA_FLOAT) {
    return tensor(next_virtual++, type, dims, packed(dims));
  }

  std::vector<cudnnBackendDescriptor_t> ops;

  void pointwise(cudnnPointwiseMode_t mode, const Desc& x, const Desc* b, const Desc& y, const Desc* t = nullptr,
                 int64_t axis = -1, cudnnDataType_t prec = CUDNN_DATA_FLOAT) {
    Desc pw(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    pw.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, &mode)
        .set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, &prec);
    if (axis >= 0) pw.set(CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, &axis);
    const Desc& p = add(std::move(pw.finalize()));
    Desc op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, p).set_desc(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
    if (b) op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, *b);
    op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
    if (t) op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, *t);
    ops.push_back(add(std::move(op.finalize())).get());
  }
  void matmul(const Desc& a, const Desc& b, const Desc& c) {
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    Desc mm(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    const Desc& m = add(std::move(mm.set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, &comp).finalize()));
    Desc op(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a)
        .set_desc(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b)
        .set_desc(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c)
        .set_desc(CUDNN_ATTR_OPERATION_MATMUL_DESC, m);
    ops.push_back(add(std::move(op.finalize())).get());
  }
  void reduce(cudnnReduceTensorOp_t how, const Desc& x, const Desc& y) {
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    Desc rd(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    rd.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, &how)
        .set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, &comp);
    const Desc& r = add(std::move(rd.finalize()));
    Desc op(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x)
        .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y)
        .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_DESC, r);
    ops.push_back(add(std::move(op.finalize())).get());
  }
  // y (of `type`): x with its last two dimensions exchanged, strides `ts` (for the transposed products).
  const Desc& transpose(const Desc& x, const Dims& td, const Dims& ts, cudnnDataType_t type) {
    const Desc& y = tensor(next_virtual++, type, td, ts);
    Desc op(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x).set_desc(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y);
    ops.push_back(add(std::move(op.finalize())).get());
    return y;
  }

  // Row and column indices of the (B, H, S, S) scores x, as the frontend generates them (INT32).
  std::pair<const Desc*, const Desc*> indices(const Desc& x, const Dims& st) {
    const Desc& row = virt(st, CUDNN_DATA_INT32);
    pointwise(CUDNN_POINTWISE_GEN_INDEX, x, nullptr, row, nullptr, 2, CUDNN_DATA_INT32);
    const Desc& col = virt(st, CUDNN_DATA_INT32);
    pointwise(CUDNN_POINTWISE_GEN_INDEX, x, nullptr, col, nullptr, 3, CUDNN_DATA_INT32);
    return {&row, &col};
  }

  // The masked, biased, scaled scores (B, H, S, S) of q k^T: the part both graphs share.
  const Desc& scores(const Desc& q, const Desc& kt, const Desc& slopes, const Desc& scale, const Desc& neg_inf,
                     const Dims& st) {
    const Desc& s = virt(st);
    matmul(q, kt, s);
    const Desc& s1 = virt(st);
    pointwise(CUDNN_POINTWISE_MUL, s, &scale, s1);
    // ALiBi: + slope_h (col - row); the distance in INT32, its product with the fp32 slopes in fp32.
    const auto [row, col] = indices(s1, st);
    const Desc& dist = virt(st, CUDNN_DATA_INT32);
    pointwise(CUDNN_POINTWISE_SUB, *col, row, dist, nullptr, -1, CUDNN_DATA_INT32);
    const Desc& bias = virt(st);
    pointwise(CUDNN_POINTWISE_MUL, dist, &slopes, bias);
    const Desc& s2 = virt(st);
    pointwise(CUDNN_POINTWISE_ADD, s1, &bias, s2);
    // Causal: keys j <= query i (row >= col, a BOOLEAN compare on indices of its own), the rest masked.
    const auto [crow, ccol] = indices(s2, st);
    const Desc& keep_mask = virt(st, CUDNN_DATA_BOOLEAN);
    pointwise(CUDNN_POINTWISE_CMP_GE, *crow, ccol, keep_mask, nullptr, -1, CUDNN_DATA_BOOLEAN);
    const Desc& s3 = virt(st);
    pointwise(CUDNN_POINTWISE_BINARY_SELECT, s2, &neg_inf, s3, &keep_mask);
    return s3;
  }

  void finish(cudnnHandle_t handle) {
    Desc graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, &handle)
        .set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, ops.data(), int64_t(ops.size()));
    const Desc& g = add(std::move(graph.finalize()));
    Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    heur.set_desc(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, g).set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, &mode);
    heur.finalize();
    int64_t count = 0;
    MT_CUDNN_CHECK(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0,
                                            &count, nullptr));
    MT_CHECK(count > 0, "cuDNN has no engine for the attention graph (model.attention_impl \"native\" avoids cuDNN)");
    std::vector<Desc> cfgs;
    std::vector<cudnnBackendDescriptor_t> raw;
    for (int64_t i = 0; i < count; ++i) {
      cfgs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
      raw.push_back(cfgs.back().get());
    }
    MT_CUDNN_CHECK(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                            count, &count, raw.data()));
    // The first configuration (best first) that builds a plan.
    cudnnStatus_t last = CUDNN_STATUS_NOT_SUPPORTED;
    for (int64_t i = 0; i < count && !exec; ++i) {
      auto p = std::make_unique<Desc>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
      p->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, &handle)
          .set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, &raw[size_t(i)]);
      last = cudnnBackendFinalize(p->get());
      if (last == CUDNN_STATUS_SUCCESS) exec = std::move(p);
    }
    if (!exec) MT_CUDNN_CHECK(last);
    MT_CUDNN_CHECK(cudnnBackendGetAttribute(exec->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                                            &count, &workspace));
    for (auto& c : cfgs) keep.push_back(std::move(c));
  }

  void execute(cudnnHandle_t handle, const std::vector<int64_t>& uids, const std::vector<void*>& ptrs,
               void* workspace_ptr) {
    Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, uids.data(), int64_t(uids.size()))
        .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, ptrs.data(), int64_t(ptrs.size()))
        .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, &workspace_ptr)
        .finalize();
    MT_CUDNN_CHECK(cudnnBackendExecute(handle, exec->get(), pack.get()));
  }
};

CudnnAttention::CudnnAttention(Context& ctx) : ctx_(ctx) {
  cudnnHandle_t h = nullptr;
  MT_CUDNN_CHECK(cudnnCreate(&h));
  handle_ = h;
}

CudnnAttention::~CudnnAttention() {
  plans_.clear();
  if (handle_) cudnnDestroy(static_cast<cudnnHandle_t>(handle_));
}

CudnnAttention::Plan& CudnnAttention::plan(bool backward, int B, int S, int H, int Dh) {
  const Key key{backward, B, S, H, Dh};
  auto it = plans_.find(key);
  if (it != plans_.end()) return *it->second;
  MT_CHECK(Dh % 8 == 0 && Dh <= 256, "cuDNN attention needs head_dim a multiple of 8 and at most 256, got ", Dh,
           " (model.attention_impl \"native\" has no such limit)");
  auto p = std::make_unique<Plan>();
  const int64_t b = B, t = S, h = H, d = Dh, tok = 3 * h * d;
  const Dims qd{b, h, t, d}, qs{t * tok, d, tok, 1};      // q, v (and dq, dk, dv) in qkv / dqkv
  const Dims ktd{b, h, d, t}, kts{t * tok, d, 1, tok};    // k^T, v^T
  const Dims od{b, h, t, d}, os{t * h * d, d, h * d, 1};  // out, dout
  const Dims sd{b, h, t, 1}, ss{h * t, t, 1, 1};          // lse (and the row sums D)
  const Dims st{b, h, t, t};
  const Dims one{1, 1, 1, 1};
  const Desc& q = p->tensor(kQ, CUDNN_DATA_BFLOAT16, qd, qs);
  const Desc& kt = p->tensor(kKt, CUDNN_DATA_BFLOAT16, ktd, kts);
  const Desc& slopes = p->tensor(kSlopes, CUDNN_DATA_FLOAT, {1, h, 1, 1}, {h, 1, 1, 1});
  const Desc& scale = p->tensor(kScale, CUDNN_DATA_FLOAT, one, one, Plan::Value::ByValue);
  const Desc& neg_inf = p->tensor(kNegInf, CUDNN_DATA_FLOAT, one, one, Plan::Value::ByValue);
  const Desc& stats = p->tensor(kStats, CUDNN_DATA_FLOAT, sd, ss);
  const Desc& o = p->tensor(kO, CUDNN_DATA_BFLOAT16, od, os);
  if (!backward) {
    const Desc& v = p->tensor(kV, CUDNN_DATA_BFLOAT16, qd, qs);
    const Desc& s = p->scores(q, kt, slopes, scale, neg_inf, st);
    // Softmax with its statistics: lse = max + log(sum exp(s - max)); P = e / sum, in bf16 for P V.
    const Desc& mx = p->virt(sd);
    p->reduce(CUDNN_REDUCE_TENSOR_MAX, s, mx);
    const Desc& centred = p->virt(st);
    p->pointwise(CUDNN_POINTWISE_SUB, s, &mx, centred);
    const Desc& e = p->virt(st);
    p->pointwise(CUDNN_POINTWISE_EXP, centred, nullptr, e);
    const Desc& sum = p->virt(sd);
    p->reduce(CUDNN_REDUCE_TENSOR_ADD, e, sum);
    const Desc& logsum = p->virt(sd);
    p->pointwise(CUDNN_POINTWISE_LOG, sum, nullptr, logsum);
    p->pointwise(CUDNN_POINTWISE_ADD, mx, &logsum, stats);
    const Desc& prob = p->virt(st, CUDNN_DATA_BFLOAT16);
    p->pointwise(CUDNN_POINTWISE_DIV, e, &sum, prob);
    p->matmul(prob, v, o);
  } else {
    const Desc& vt = p->tensor(kVt, CUDNN_DATA_BFLOAT16, ktd, kts);
    const Desc& dout = p->tensor(kDO, CUDNN_DATA_BFLOAT16, od, os);
    const Desc& dq = p->tensor(kDQ, CUDNN_DATA_BFLOAT16, qd, qs);
    const Desc& dk = p->tensor(kDK, CUDNN_DATA_BFLOAT16, qd, qs);
    const Desc& dv = p->tensor(kDV, CUDNN_DATA_BFLOAT16, qd, qs);
    const Desc& unit = p->tensor(kOne, CUDNN_DATA_FLOAT, one, one, Plan::Value::ByValue);
    const Desc& dq_acc = p->tensor(kDQAcc, CUDNN_DATA_FLOAT, qd, Plan::packed(qd), Plan::Value::InMemory,
                                   CUDNN_TENSOR_REORDERING_F16x16);
    // D_i = (dout_i . out_i) * 1.
    const Desc& prod = p->virt(od);
    p->pointwise(CUDNN_POINTWISE_MUL, dout, &o, prod);
    const Desc& rowsum = p->virt(sd);
    p->reduce(CUDNN_REDUCE_TENSOR_ADD, prod, rowsum);
    const Desc& rowdot = p->virt(sd);
    p->pointwise(CUDNN_POINTWISE_MUL, rowsum, &unit, rowdot);
    // P = exp(s - lse), recomputed, in bf16; dV = P^T dout.
    const Desc& s = p->scores(q, kt, slopes, scale, neg_inf, st);
    const Desc& centred = p->virt(st);
    p->pointwise(CUDNN_POINTWISE_SUB, s, &stats, centred);
    const Desc& prob = p->virt(st, CUDNN_DATA_BFLOAT16);
    p->pointwise(CUDNN_POINTWISE_EXP, centred, nullptr, prob);
    const Dims tdims{b, h, t, t}, tstrides{h * t * t, t * t, 1, t};  // (keys, queries) views of (queries, keys)
    p->matmul(p->transpose(prob, tdims, tstrides, CUDNN_DATA_BFLOAT16), dout, dv);
    // dP = dout V^T; dS = P (dP * 1 - D) / sqrt(Dh); dK = dS^T q; dQ = dS k (through the fp32 accumulator).
    const Desc& dp = p->virt(st);
    p->matmul(dout, vt, dp);
    const Desc& dp1 = p->virt(st);
    p->pointwise(CUDNN_POINTWISE_MUL, dp, &unit, dp1);
    const Desc& dp_centred = p->virt(st);
    p->pointwise(CUDNN_POINTWISE_SUB, dp1, &rowdot, dp_centred);
    const Desc& ds_raw = p->virt(st);
    p->pointwise(CUDNN_POINTWISE_MUL, dp_centred, &prob, ds_raw);
    const Desc& ds = p->virt(st);
    p->pointwise(CUDNN_POINTWISE_MUL, ds_raw, &scale, ds);
    p->matmul(p->transpose(ds, tdims, tstrides, CUDNN_DATA_FLOAT), q, dk);
    const Desc& k = p->transpose(kt, qd, qs, CUDNN_DATA_BFLOAT16);
    p->matmul(ds, k, dq_acc);
    p->pointwise(CUDNN_POINTWISE_IDENTITY, dq_acc, nullptr, dq);
  }
  p->finish(static_cast<cudnnHandle_t>(handle_));
  return *plans_.emplace(key, std::move(p)).first->second;
}

void CudnnAttention::run(Plan& p, int Dh, std::vector<int64_t> uids, std::vector<void*> ptrs, size_t dq_acc_bytes) {
  auto h = static_cast<cudnnHandle_t>(handle_);
  MT_CUDNN_CHECK(cudnnSetStream(h, ctx_.stream()));
  // By value: the scale, the masked value (the lowest float before cuDNN 9.10, -inf from then on) and 1.
  float scale = 1.f / std::sqrt(float(Dh)), unit = 1.f;
  float masked = cudnnGetVersion() < 91000 ? std::numeric_limits<float>::lowest() : -std::numeric_limits<float>::infinity();
  // Scratch: the backward's dQ accumulator (zeroed), then cuDNN's workspace.
  const size_t acc = (dq_acc_bytes + 255) / 256 * 256;
  char* scratch = acc + size_t(p.workspace) > 0 ? static_cast<char*>(ctx_.scratch(acc + size_t(p.workspace))) : nullptr;
  uids.insert(uids.end(), {kScale, kNegInf});
  ptrs.insert(ptrs.end(), {&scale, &masked});
  if (acc) {
    MT_CUDA_CHECK(cudaMemsetAsync(scratch, 0, dq_acc_bytes, ctx_.stream()));
    ctx_.count_launches(1);
    uids.insert(uids.end(), {kOne, kDQAcc});
    ptrs.insert(ptrs.end(), {&unit, scratch});
  }
  p.execute(h, uids, ptrs, p.workspace > 0 ? scratch + acc : nullptr);
  ctx_.count_launches(1);
}

void CudnnAttention::forward(bf16* out, float* lse, const bf16* qkv, const float* slopes, int B, int S, int H, int Dh) {
  if (B == 0 || S == 0) return;
  auto* base = const_cast<bf16*>(qkv);
  const size_t hd = size_t(H) * Dh;
  run(plan(false, B, S, H, Dh), Dh, {kQ, kKt, kV, kO, kStats, kSlopes},
      {base, base + hd, base + 2 * hd, out, lse, const_cast<float*>(slopes)}, 0);
}

void CudnnAttention::backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse,
                              const float* slopes, int B, int S, int H, int Dh) {
  if (B == 0 || S == 0) return;
  auto* base = const_cast<bf16*>(qkv);
  const size_t hd = size_t(H) * Dh;
  run(plan(true, B, S, H, Dh), Dh, {kQ, kKt, kVt, kO, kDO, kStats, kSlopes, kDQ, kDK, kDV},
      {base, base + hd, base + 2 * hd, const_cast<bf16*>(out), const_cast<bf16*>(dout), const_cast<float*>(lse),
       const_cast<float*>(slopes), dqkv, dqkv + hd, dqkv + 2 * hd},
      sizeof(float) * size_t(B) * H * S * Dh);
}

}  // namespace mt::cuda
