// Why: a Device for the communication tests whose memory is host memory but which counts its copies,
// so that the device-space paths (staging through the host, copies through the Device) run and can be
// observed without a GPU. `kind` Cuda makes MpiComm stage; Cpu makes it use the memory directly.
#pragma once

#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/core/check.h"
#include "engine/core/device.h"

namespace mt::test {

class CountingDevice final : public Device {
 public:
  explicit CountingDevice(DeviceKind kind = DeviceKind::Cuda) : kind_(kind) {}

  DeviceKind kind() const override { return kind_; }
  std::string name() const override { return "counting test device"; }
  void* alloc(size_t bytes) override {
    void* p = std::calloc(bytes + 1, 1);
    MT_CHECK(p, "out of memory");
    allocated_ += bytes;
    return p;
  }
  void release(void* ptr) override { std::free(ptr); }
  void zero(void* ptr, size_t bytes) override { std::memset(ptr, 0, bytes); }
  void copy(void* dst, const void* src, size_t bytes, CopyKind kind) override {
    ++copies[int(kind)];
    std::memcpy(dst, src, bytes);
  }
  void synchronize() override { ++syncs; }
  // Bytes allocated so far (release does not know sizes): an upper bound of the peak.
  size_t peak_bytes() const override { return allocated_; }

  int copies_of(CopyKind kind) const { return copies[int(kind)]; }
  int total_copies() const { return copies[0] + copies[1] + copies[2]; }
  void reset_counts() { copies[0] = copies[1] = copies[2] = syncs = 0; }

  int copies[3] = {0, 0, 0};  // by CopyKind
  int syncs = 0;

 private:
  DeviceKind kind_;
  size_t allocated_ = 0;
};

}  // namespace mt::test
