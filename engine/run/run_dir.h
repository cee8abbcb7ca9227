// Why: a run folder has one writer and loses no line. RunDirLock holds an exclusive flock on
// DIR/.lock for the life of the run (the kernel drops it when the process dies, so a kill -9 leaves
// no stale lock), and a second run on the same folder fails at once naming the holder's PID.
// CheckedWriter appends lines to a file and checks every write and flush: a write that fails (a full
// disk) is retried once after a short pause, then is an Error (exit 1), never a silently lost line.
#pragma once

#include <string>

namespace mt {

class RunDirLock {
 public:
  RunDirLock() = default;
  // Creates `dir` if needed and locks it; an InputError "DIR is in use by PID N" if another holds it.
  explicit RunDirLock(const std::string& dir);
  ~RunDirLock();
  RunDirLock(RunDirLock&& o) noexcept;
  RunDirLock& operator=(RunDirLock&& o) noexcept;
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

 private:
  int fd_ = -1;
};

class CheckedWriter {
 public:
  CheckedWriter() = default;
  explicit CheckedWriter(const std::string& path);  // opens for appending
  ~CheckedWriter();
  CheckedWriter(const CheckedWriter&) = delete;
  CheckedWriter& operator=(const CheckedWriter&) = delete;
  // Appends `line` and a newline and flushes; an Error naming the file if it cannot be written.
  void write_line(const std::string& line);

 private:
  std::string path_;
  int fd_ = -1;
};

// Flushes stdout and checks that no write to it failed (a redirected log on a full disk): an Error if one did.
void check_stdout();

}  // namespace mt
