// Why: characters are what BPC divides by, and every part of the data module must count them the same
// way: a character is a UTF-8 lead byte, i.e. a byte b with (b & 0xC0) != 0x80. For valid UTF-8 that
// is exactly the number of code points, and a character whose bytes are split between two shards,
// windows or tokens is counted once (where its lead byte is). These helpers are that rule, plus the
// decoder the BPE pre-tokenizer scans with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace mt::data::utf8 {

inline bool is_lead(uint8_t b) { return (b & 0xC0) != 0x80; }

// Number of lead bytes in [p, p + n).
inline int64_t count_chars(const uint8_t* p, size_t n) {
  int64_t c = 0;
  for (size_t i = 0; i < n; ++i) c += is_lead(p[i]);
  return c;
}

// Decodes one code point at p (n > 0 bytes available). A byte that does not start a well-formed
// sequence (overlong, surrogate, > U+10FFFF, truncated) decodes as kInvalid with length 1.
inline constexpr char32_t kInvalid = 0xFFFFFFFF;
inline char32_t decode(const uint8_t* p, size_t n, size_t* len) {
  uint8_t b0 = p[0];
  *len = 1;
  if (b0 < 0x80) return b0;
  int need;
  char32_t cp, min;
  if ((b0 & 0xE0) == 0xC0) {
    need = 1, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    need = 2, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    need = 3, cp = b0 & 0x07, min = 0x10000;
  } else {
    return kInvalid;
  }
  if (size_t(need) >= n) return kInvalid;
  for (int k = 1; k <= need; ++k) {
    if ((p[k] & 0xC0) != 0x80) return kInvalid;
    cp = (cp << 6) | (p[k] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return kInvalid;
  *len = size_t(need) + 1;
  return cp;
}

// Number of ill-formed sequences in [p, p + n) (0 for valid UTF-8), with an ASCII fast path. The
// offset of the first one is stored in *first_bad (when there is one).
inline int64_t count_invalid(const uint8_t* p, size_t n, size_t* first_bad) {
  int64_t bad = 0;
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    size_t len;
    if (decode(p + i, n - i, &len) == kInvalid) {
      if (bad++ == 0) *first_bad = i;
    }
    i += len;
  }
  return bad;
}

// Length of the incomplete code point at the end of [p, p + n) that more bytes could complete (0-3).
inline size_t incomplete_tail(const uint8_t* p, size_t n) {
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    uint8_t b = p[n - back];
    if (b < 0x80) return 0;
    if ((b & 0xC0) == 0xC0) {  // a lead byte: complete if its sequence fits
      size_t want = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
      return want > back ? back : 0;
    }
  }
  return 0;
}

}  // namespace mt::data::utf8
