// Why: the shared part of the libFuzzer targets. Each target writes the fuzzer's bytes where the
// reader expects a file (a per-process scratch folder) and calls the reader: an InputError or Error
// is the expected answer to bad bytes; anything else (a crash, a sanitizer report, another
// exception, a hang) is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "engine/core/check.h"

namespace mt::fuzz {

// A scratch folder of this process, emptied once at start.
inline const std::string& scratch() {
  static const std::string dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string d = std::string(base ? base : "/tmp") + "/moetrain_fuzz." + std::to_string(::getpid());
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline void write_bytes(const std::string& path, const void* data, size_t n) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (n && std::fwrite(data, 1, n, f) != n) std::abort();
  std::fclose(f);
}

inline std::string text_of(const uint8_t* data, size_t n) { return std::string(reinterpret_cast<const char*>(data), n); }

// Runs the reader; our own errors are answers, not findings.
template <typename Fn>
void expect_answer(Fn&& fn) {
  try {
    fn();
  } catch (const InputError&) {
  } catch (const Error&) {
  }
}

}  // namespace mt::fuzz
