// Why: files that other tools read (checkpoints, metrics, summaries, shards) are written under a
// temporary name and renamed into place, so a crash never leaves a half-written file where a reader
// would take it for a whole one.
#pragma once

#include <cstdio>
#include <string>

namespace mt {

class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);  // opens path + ".tmp.<pid>"
  ~AtomicFile();                                 // removes the temporary if commit() was not called
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t bytes);
  void commit();  // flush, fsync, rename onto path

 private:
  std::string path_, tmp_;
  FILE* f_ = nullptr;
};

// Writes a whole text file atomically.
void write_text_atomic(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);  // InputError if it cannot be read

}  // namespace mt
