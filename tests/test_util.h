// Why: small helpers shared by the tests: a scratch folder per test, running the moetrain binary and
// capturing its exit code and output, the message of a bad input's error.
#pragma once

#include <functional>
#include <string>

namespace mt::test {

// A fresh, empty folder under the build's test_tmp named after `name`.
std::string scratch_dir(const std::string& name);

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};

// Runs the moetrain binary with `args` (a shell-quoted argument string) and captures its output.
RunResult run_moetrain(const std::string& args);

// Writes `text` to `path`.
void write_file(const std::string& path, const std::string& text);
std::string read_file(const std::string& path);

// The message of the InputError that `f` throws ("" when it throws none), CHECKed to be one line (the
// contract of every bad-input error).
std::string input_error(const std::function<void()>& f);

// Path of a file in the source tree.
std::string source_path(const std::string& relative);

}  // namespace mt::test
