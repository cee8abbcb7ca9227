// Why: the grouped linear layers of the routed experts on the CPU, the twin of the CUDA grouped GEMMs
// (cuda/experts.cu). The offsets are in host memory here, so each group is plain GEMMs on its block of
// rows, and a weight stacked from two tensors (w1 | w3) is two GEMMs into the two column blocks; the
// input gradient adds the second half's product to the first's (beta 1), as the experts always have on
// the CPU, so that the numbers of the training runs stay what they were.
#include "engine/core/check.h"
#include "engine/cpu/cpu_ops.h"

namespace mt {

namespace {

void check_grouped(const int64_t* offsets, const GroupedLinearDims& d, bool stacked) {
  MT_CHECK(d.G >= 0 && d.In > 0 && d.Out > 0 && d.rows >= 0, "grouped linear: G ", d.G, " In ", d.In, " Out ",
           d.Out, " rows ", d.rows);
  MT_CHECK(stacked ? d.split > 0 && d.split < d.Out : d.split == d.Out, "grouped linear: split ", d.split,
           " of Out ", d.Out, stacked ? " with two stacked tensors" : " with one tensor");
  MT_CHECK(offsets[0] == 0, "grouped linear: offsets[0] = ", offsets[0]);
  for (int g = 0; g < d.G; ++g)
    MT_CHECK(offsets[g + 1] >= offsets[g] && offsets[g + 1] <= d.rows, "grouped linear: offsets[", g + 1, "] = ",
             offsets[g + 1], " after ", offsets[g], " with ", d.rows, " rows");
}

// Checks the offsets, then fn(g, first row, rows) for each group with rows.
template <typename Fn>
void for_each_group(const int64_t* offsets, const GroupedLinearDims& d, Fn fn) {
  check_grouped(offsets, d, d.split < d.Out);
  for (int g = 0; g < d.G; ++g) {
    const int r0 = int(offsets[g]), n = int(offsets[g + 1] - offsets[g]);
    if (n > 0) fn(g, r0, n);
  }
}

}  // namespace

template <typename T>
void CpuOps<T>::grouped_linear_forward(T* y, const T* x, const StackedWeight<const T>& w, const int64_t* offsets,
                                       const GroupedLinearDims& d) {
  const bool stacked = d.split < d.Out;
  const int In = d.In, Out = d.Out, top = d.split, bottom = d.Out - d.split;
  for_each_group(offsets, d, [&](int g, int r0, int n) {
    const T* xg = x + size_t(r0) * In;
    T* yg = y + size_t(r0) * Out;
    gemm(yg, xg, w.top + size_t(g) * top * In, GemmShape::nt(n, top, In).with_ld(In, In, Out), 1.f, 0.f);
    if (stacked)
      gemm(yg + top, xg, w.bottom + size_t(g) * bottom * In, GemmShape::nt(n, bottom, In).with_ld(In, In, Out), 1.f,
           0.f);
  });
}

template <typename T>
void CpuOps<T>::grouped_linear_backward(T* dx, const StackedWeight<P>& dw, const T* dy, const T* x,
                                        const StackedWeight<const T>& w, const int64_t* offsets,
                                        const GroupedLinearDims& d) {
  const bool stacked = d.split < d.Out;
  const int In = d.In, Out = d.Out, top = d.split, bottom = d.Out - d.split;
  for_each_group(offsets, d, [&](int g, int r0, int n) {
    const T* xg = x + size_t(r0) * In;
    const T* dyg = dy + size_t(r0) * Out;
    T* dxg = dx + size_t(r0) * In;
    gemm(dxg, dyg, w.top + size_t(g) * top * In, GemmShape::nn(n, In, top).with_ld(Out, In, In), 1.f, 0.f);
    if (stacked)
      gemm(dxg, dyg + top, w.bottom + size_t(g) * bottom * In, GemmShape::nn(n, In, bottom).with_ld(Out, In, In), 1.f,
           1.f);
    gemm_acc(dw.top + size_t(g) * top * In, dyg, xg, GemmShape::tn(top, In, n).with_ld(Out, In, In), 1.f, 1.f);
    if (stacked)
      gemm_acc(dw.bottom + size_t(g) * bottom * In, dyg + top, xg, GemmShape::tn(bottom, In, n).with_ld(Out, In, In),
               1.f, 1.f);
  });
}

MT_CPU_INSTANTIATE(MT_OPS_EXPERTS)

}  // namespace mt
