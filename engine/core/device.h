// Why: where a backend's buffers live. The model, optimizer and communication code allocate and copy
// through this interface, so that one piece of code runs on the host (CPU backend) or on a GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mt {

enum class DeviceKind { Cpu, Cuda };
enum class CopyKind { HostToDevice, DeviceToHost, DeviceToDevice };
// What a step costs in structure rather than time (`moetrain bench` prints them per step), counted the
// same way on every backend so that a CPU run predicts the GPU's figures:
// - launches: one per kernel launch or library call that queues device work (a GEMM, a cuDNN graph
//   run, a collective, a memset or device-to-device copy); on the CPU, one per op call and per copy.
// - host_syncs: one per point where the host waits for the device: synchronize(), a device-to-host
//   copy, and every op documented "synchronises" (it returns a value or fills host memory).
struct DeviceCounters {
  int64_t launches = 0;
  int64_t host_syncs = 0;
};

// Where a buffer handed to a collective lives: host memory, or the memory of the device it was made for.
enum class MemSpace { Host, Device };

class Device {
 public:
  virtual ~Device() = default;
  virtual DeviceKind kind() const = 0;
  // The memory space of this device's buffers as handed to a collective: MemSpace::Device on every
  // backend. A comm stages device buffers through the host only where the device is not the host, and
  // counts a collective on device buffers as a launch on the CPU too (as NCCL's would be on a GPU).
  MemSpace space() const { return MemSpace::Device; }
  virtual std::string name() const = 0;
  // Zero-filled, 64-byte (CPU) or 256-byte (GPU) aligned; throws mt::Error when out of memory.
  virtual void* alloc(size_t bytes) = 0;
  virtual void release(void* ptr) = 0;
  virtual void zero(void* ptr, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes, CopyKind kind) = 0;
  // Waits until all work queued on this device has finished.
  virtual void synchronize() = 0;
  // Peak bytes allocated through this device so far.
  virtual size_t peak_bytes() const = 0;
  // The counters since the device was made (readers take differences); backends and comms add to them.
  DeviceCounters& counters() { return counters_; }
  const DeviceCounters& counters() const { return counters_; }

 private:
  DeviceCounters counters_;
};

// The host: plain aligned memory; every copy is a memcpy.
Device& cpu_device();

}  // namespace mt
