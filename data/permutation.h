// Why: the loader shuffles billions of sequences without a table. A keyed Feistel network on the
// smallest even number of bits that covers [0, n), with cycle-walking (re-encrypt until the value
// falls inside [0, n)), is an exact bijection of [0, n) that costs O(1) memory and a few hashes per
// lookup, and depends only on (n, key).
#pragma once

#include <cstdint>

namespace mt::data {

// SplitMix64's finalizer: a strong 64-bit mix, used for the round function and for deriving keys.
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

class Permutation {
 public:
  Permutation(uint64_t n, uint64_t key) : n_(n) {
    int bits = 0;
    while (bits < 64 && (uint64_t(1) << bits) < n) ++bits;
    half_ = bits <= 2 ? 1 : (bits + 1) / 2;
    mask_ = (uint64_t(1) << half_) - 1;
    for (int r = 0; r < kRounds; ++r) keys_[r] = mix64(key ^ mix64(uint64_t(r) + 1));
  }

  uint64_t size() const { return n_; }

  // The image of i (i < n). For n <= 1 this is i.
  uint64_t operator()(uint64_t i) const {
    if (n_ <= 1) return i;
    uint64_t x = encrypt(i);
    while (x >= n_) x = encrypt(x);  // the cycle through i returns into [0, n): walk it
    return x;
  }

 private:
  static constexpr int kRounds = 6;
  uint64_t encrypt(uint64_t x) const {
    uint64_t left = x >> half_, right = x & mask_;
    for (int r = 0; r < kRounds; ++r) {
      uint64_t next = left ^ (mix64(right ^ keys_[r]) & mask_);
      left = right;
      right = next;
    }
    return (left << half_) | right;
  }

  uint64_t n_;
  int half_ = 1;
  uint64_t mask_ = 1;
  uint64_t keys_[kRounds] = {};
};

}  // namespace mt::data
