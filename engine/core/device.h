// Why: where a backend's buffers live. The model, optimizer and communication code allocate and copy
// through this interface, so that one piece of code runs on the host (CPU backend) or on a GPU.
#pragma once

#include <cstddef>
#include <string>

namespace mt {

enum class DeviceKind { Cpu, Cuda };
enum class CopyKind { HostToDevice, DeviceToHost, DeviceToDevice };
// Where a buffer handed to a collective lives: host memory, or the memory of the device it was made for.
enum class MemSpace { Host, Device };

class Device {
 public:
  virtual ~Device() = default;
  virtual DeviceKind kind() const = 0;
  // The memory space of this device's buffers (the CPU's are host memory).
  MemSpace space() const { return kind() == DeviceKind::Cpu ? MemSpace::Host : MemSpace::Device; }
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
};

// The host: plain aligned memory; every copy is a memcpy.
Device& cpu_device();

}  // namespace mt
