// Why: the CPU backend of the kernel interface (engine/ops/ops.h) for T = float (training on the CPU)
// and T = double (the exact reference of the gradient checks). Each method is defined in the file of
// its family (gemm.cpp, layers.cpp, attention.cpp, router.cpp, elementwise.cpp); the buffers are host
// memory from cpu_device(). P = acc_t<T> is T itself on the CPU.
//
// Gradient convention (as in ops.h): parameter gradients ACCUMULATE (+=); activation gradients are
// WRITTEN (=), except the residual stream: rmsnorm_backward ADDS into dinp.
//
// Every kernel is deterministic (the same bits on every run with the same thread count, which a
// bit-identical resume needs): no float atomics, and every sum of our own loops is taken in an order
// fixed by the sizes alone (reductions over rows run per column in row order, or over fixed-size
// chunks combined in chunk order), so those do not even depend on the thread count. The GEMMs are
// OpenBLAS's, deterministic for a fixed thread count.
#pragma once

#include "engine/ops/ops.h"

namespace mt {

template <typename T>
class CpuOps final : public Ops<T> {
 public:
  using P = acc_t<T>;

  Device& device() override { return cpu_device(); }

  MT_OPS(MT_OPS_OVERRIDE, T, P)
};

extern template class CpuOps<float>;
extern template class CpuOps<double>;

// The explicit instantiation, for float and double, of one family of the table (engine/ops/ops.h), at the
// end of the file that defines its ops: MT_CPU_INSTANTIATE(MT_OPS_LAYERS).
#define MT_CPU_OP_FLOAT_(ret, name, params, args, sync) template ret CpuOps<float>::name params;
#define MT_CPU_OP_DOUBLE_(ret, name, params, args, sync) template ret CpuOps<double>::name params;
#define MT_CPU_INSTANTIATE(FAMILY) FAMILY(MT_CPU_OP_FLOAT_, float, float) FAMILY(MT_CPU_OP_DOUBLE_, double, double)

}  // namespace mt
