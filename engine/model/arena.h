// Why: activations and scratch come from one allocation sized once from the config, so the step loop
// never allocates. Buffers are requested by pointer and size, then placed in a single block.
#pragma once

#include <cstddef>
#include <vector>

#include "engine/core/device.h"

namespace mt {

class Arena {
 public:
  explicit Arena(Device& device) : device_(device) {}
  ~Arena() {
    if (base_) device_.release(base_);
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Requests `count` elements for *ptr; the pointer is set by allocate(). count 0 gives nullptr.
  template <typename X>
  void request(X** ptr, size_t count) {
    requests_.push_back({reinterpret_cast<void**>(ptr), count * sizeof(X)});
  }

  // Places every request in one zeroed block (256-byte aligned each).
  void allocate() {
    size_t total = 0;
    for (auto& r : requests_) total += align(r.bytes);
    base_ = total ? static_cast<char*>(device_.alloc(total)) : nullptr;
    size_t off = 0;
    for (auto& r : requests_) {
      *r.ptr = r.bytes ? base_ + off : nullptr;
      off += align(r.bytes);
    }
    bytes_ = total;
    requests_.clear();
  }

  size_t bytes() const { return bytes_; }

 private:
  static size_t align(size_t b) { return (b + 255) / 256 * 256; }
  struct Request {
    void** ptr;
    size_t bytes;
  };
  Device& device_;
  std::vector<Request> requests_;
  char* base_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace mt
