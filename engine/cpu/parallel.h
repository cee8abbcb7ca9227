// Why: the CPU kernels' one tuning constant: when a loop is worth a parallel region. Kept apart from the
// process-level thread policy (threads.h), which the kernels do not need.
#pragma once

#include <cstddef>

namespace mt::cpu {

// Loops with at most this many elements (or rows x columns) run on the calling thread: at ~1 ns an
// element, the work is then below the few microseconds that waking the team costs.
constexpr size_t kParallelMin = size_t(1) << 14;

}  // namespace mt::cpu
