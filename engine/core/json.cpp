// Why: every JSON file we read goes through one function, so that a missing file or a syntax error
// is one InputError naming the file.
#include "engine/core/json.h"

#include <filesystem>
#include <fstream>

#include "engine/core/check.h"

namespace fs = std::filesystem;

namespace mt {

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  MT_INPUT(in.good(), path, ": cannot open (", (fs::exists(path) ? "not readable" : "no such file"), ")");
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    std::string msg = e.what();
    auto pos = msg.find("parse error");
    throw InputError(str(path, ": invalid JSON: ", pos == std::string::npos ? msg : msg.substr(pos)));
  }
}

}  // namespace mt
