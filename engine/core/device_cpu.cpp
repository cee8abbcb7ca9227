// Why: the host as a Device (engine/core/device.h): the CPU backend's buffers are plain host memory, zeroed
// and 64-byte aligned (one AVX-512 vector, so vector loops see the same alignment on every run), with
// the peak of live bytes tracked for the memory report. Copies are memcpy; there is nothing to wait for.
// The counters (device.h) are kept as a GPU would: every zero and copy is a launch, a device-to-host
// copy and synchronize() are host syncs, so that a CPU run gives the step's structure.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "engine/core/check.h"
#include "engine/core/device.h"

namespace mt {

namespace {

constexpr size_t kAlign = 64;

// Each block is calloc'ed with room for the alignment and a header just below the aligned pointer that
// records the block's start and size (release needs both). calloc gives zeroed memory without touching
// large blocks page by page.
struct Header {
  void* base;
  size_t bytes;
};

class CpuDevice final : public Device {
 public:
  DeviceKind kind() const override { return DeviceKind::Cpu; }
  std::string name() const override { return "cpu"; }

  void* alloc(size_t bytes) override {
    const size_t total = bytes + kAlign + sizeof(Header);
    MT_CHECK(total > bytes, "host allocation of ", bytes, " bytes");
    void* base = std::calloc(1, total);
    if (!base) throw Error(str("out of host memory allocating ", bytes, " bytes (", live_ / (1 << 20),
                               " MiB already in use)"));
    const uintptr_t first = reinterpret_cast<uintptr_t>(base) + sizeof(Header);
    char* ptr = reinterpret_cast<char*>((first + kAlign - 1) / kAlign * kAlign);
    const Header h{base, bytes};
    std::memcpy(ptr - sizeof(Header), &h, sizeof(Header));
    const size_t live = live_ += bytes;
    size_t peak = peak_.load();
    while (live > peak && !peak_.compare_exchange_weak(peak, live)) {
    }
    return ptr;
  }

  void release(void* ptr) override {
    if (!ptr) return;
    Header h;
    std::memcpy(&h, static_cast<char*>(ptr) - sizeof(Header), sizeof(Header));
    live_ -= h.bytes;
    std::free(h.base);
  }

  void zero(void* ptr, size_t bytes) override {
    ++counters().launches;
    if (bytes) std::memset(ptr, 0, bytes);
  }

  void copy(void* dst, const void* src, size_t bytes, CopyKind kind) override {
    ++counters().launches;
    if (kind == CopyKind::DeviceToHost) ++counters().host_syncs;
    if (bytes && dst != src) std::memcpy(dst, src, bytes);
  }

  void synchronize() override { ++counters().host_syncs; }

  size_t peak_bytes() const override { return peak_.load(); }

 private:
  std::atomic<size_t> live_{0};
  std::atomic<size_t> peak_{0};
};

}  // namespace

Device& cpu_device() {
  static CpuDevice device;
  return device;
}

}  // namespace mt
