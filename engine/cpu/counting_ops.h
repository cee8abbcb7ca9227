// Why: `moetrain bench` prints kernel launches and host syncs per step (engine/core/device.h
// DeviceCounters) so that the structure of a step can be measured where no GPU runs. The CPU backend
// counts them here, in one place: CountingOps wraps any Ops<T> (the CPU's in app/run_backend.h) and
// counts every op call as one launch, and a call of an op marked HostSync in the table of
// engine/ops/ops.h also as a host sync, into the wrapped backend's device counters. Its methods are
// generated from that table (engine/ops/forwarding_ops.h), so a new op is counted without an edit here.
// The device counts its own zero and copy calls, the comms their collectives. (The CUDA backend counts
// at its launch sites instead: one op may launch several kernels there.)
#pragma once

#include "engine/ops/forwarding_ops.h"

namespace mt {

template <typename T>
class CountingOps final : public ForwardingOps<T> {
 public:
  explicit CountingOps(Ops<T>& inner) : ForwardingOps<T>(inner), counters_(inner.device().counters()) {}

 private:
  void before(OpSync sync) override {
    ++counters_.launches;
    if (sync == OpSync::HostSync) ++counters_.host_syncs;
  }
  DeviceCounters& counters_;
};

}  // namespace mt
