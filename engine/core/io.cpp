// Why: see io.h.
#include "engine/core/io.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/core/check.h"

namespace mt {

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  tmp_ = path + ".tmp." + std::to_string(getpid());
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) throw Error(str(tmp_, ": cannot create (", std::strerror(errno), ")"));
}

AtomicFile::~AtomicFile() {
  if (f_) {
    std::fclose(f_);
    std::remove(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t bytes) {
  if (bytes && std::fwrite(data, 1, bytes, f_) != bytes)
    throw Error(str(tmp_, ": write failed (", std::strerror(errno), "; disk full?)"));
}

void AtomicFile::commit() {
  if (std::fflush(f_) != 0 || fsync(fileno(f_)) != 0)
    throw Error(str(tmp_, ": flush failed (", std::strerror(errno), ")"));
  std::fclose(f_);
  f_ = nullptr;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
    throw Error(str("cannot rename ", tmp_, " to ", path_, " (", std::strerror(errno), ")"));
}

void write_text_atomic(const std::string& path, const std::string& text) {
  AtomicFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MT_INPUT(in.good(), path, ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace mt
