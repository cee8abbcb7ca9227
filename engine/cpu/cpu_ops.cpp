// Why: the one explicit instantiation of CpuOps<float> and CpuOps<double> (its vtable); the methods are
// instantiated in the files that define them.
#include "engine/cpu/cpu_ops.h"

namespace mt {

template class CpuOps<float>;
template class CpuOps<double>;

}  // namespace mt
