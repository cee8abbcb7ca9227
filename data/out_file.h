// Why: every file the data build writes (shards, Megatron pairs, index.json) must appear whole or not
// at all: it is written under a temporary name and renamed into place, and removed if the build fails.
// Writes are buffered; the shard writer also reads back and truncates what it wrote (the val split).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "engine/core/check.h"

namespace mt::data {

// A file written under "<path>.tmp.<pid>" and renamed onto <path> by commit(); removed if never
// committed. Writes are buffered; pread/pwrite/truncate work on what was written so far.
class OutFile {
 public:
  explicit OutFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp." + std::to_string(::getpid())) {
    fd_ = ::open(tmp_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error(str(tmp_, ": cannot create (", std::strerror(errno), ")"));
  }
  ~OutFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;

  void write(const void* data, size_t n) {
    if (buf_.size() + n > kBuffer) flush();
    if (n >= kBuffer) {
      write_all(data, n);
    } else {
      buf_.insert(buf_.end(), static_cast<const char*>(data), static_cast<const char*>(data) + n);
    }
  }
  // Closes the descriptor of a file that is complete for now (any later call reopens it), so that a
  // build of many shards does not hold one descriptor per shard.
  void park() {
    flush();
    ::close(fd_);
    fd_ = -1;
  }
  void pwrite_at(int64_t offset, const void* data, size_t n) {
    flush();
    if (::pwrite(fd_, data, n, offset) != ssize_t(n)) fail("write");
  }
  void pread_at(int64_t offset, void* data, size_t n) {
    flush();
    if (::pread(fd_, data, n, offset) != ssize_t(n)) fail("read back");
  }
  void truncate(int64_t size) {
    flush();
    if (::ftruncate(fd_, size) != 0) fail("truncate");
  }
  void commit() {
    flush();
    if (::fsync(fd_) != 0) fail("fsync");
    ::close(fd_);
    fd_ = -1;
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
      throw Error(str("cannot rename ", tmp_, " to ", path_, " (", std::strerror(errno), ")"));
    committed_ = true;
  }
  void set_path(std::string path) { path_ = std::move(path); }

 private:
  static constexpr size_t kBuffer = size_t(8) << 20;
  [[noreturn]] void fail(const char* what) {
    throw Error(str(tmp_, ": ", what, " failed (", std::strerror(errno), "; disk full?)"));
  }
  void write_all(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("write");
      p += w;
      n -= size_t(w);
    }
  }
  // Writes the buffer out (reopening a parked file first, positioned at its end).
  void flush() {
    if (fd_ < 0) {
      fd_ = ::open(tmp_.c_str(), O_RDWR | O_CLOEXEC);
      if (fd_ < 0 || ::lseek(fd_, 0, SEEK_END) < 0) fail("reopen");
    }
    write_all(buf_.data(), buf_.size());
    buf_.clear();
  }
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
  std::vector<char> buf_;
};

}  // namespace mt::data
