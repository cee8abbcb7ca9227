// Why: see run_dir.h.
#include "engine/run/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "engine/core/check.h"

namespace fs = std::filesystem;

namespace mt {

RunDirLock::RunDirLock(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  const std::string path = (fs::path(dir) / ".lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  MT_INPUT(fd_ >= 0, path, ": cannot open the run folder's lock (", std::strerror(errno), ")");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {0};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    ::close(fd_);
    fd_ = -1;
    MT_INPUT(err != EWOULDBLOCK, dir, ": the run folder is in use by PID ",
             n > 0 ? std::string(buf, size_t(n)) : std::string("?"), " (another run writes there; wait for it or "
             "choose another --out)");
    throw Error(str(path, ": cannot lock (", std::strerror(err), ")"));
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != ssize_t(pid.size()))
    throw Error(str(path, ": cannot write the holder's PID (", std::strerror(errno), ")"));
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

RunDirLock::RunDirLock(RunDirLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }

RunDirLock& RunDirLock::operator=(RunDirLock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

CheckedWriter::CheckedWriter(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(str(path, ": cannot open for writing (", std::strerror(errno), ")"));
}

CheckedWriter::~CheckedWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void CheckedWriter::write_line(const std::string& line) {
  MT_CHECK(fd_ >= 0, "write_line on a closed writer");
  const std::string text = line + "\n";
  struct stat st;
  const off_t at = ::fstat(fd_, &st) == 0 ? st.st_size : -1;
  int err = 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += size_t(n);
    }
    if (done == text.size()) return;
    err = errno;
    // A partial line is cut off, so that the file stays whole lines; then one retry after a pause.
    if (at >= 0 && ::ftruncate(fd_, at) != 0) break;
    if (attempt == 0) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  throw Error(str(path_, ": cannot write a line (", std::strerror(err), "); stopping rather than losing it"));
}

void check_stdout() {
  if (std::fflush(stdout) != 0 || std::ferror(stdout))
    throw Error(str("stdout: a write failed (", std::strerror(errno), "); the log is incomplete"));
}

}  // namespace mt
