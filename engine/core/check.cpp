// Why: the single place that formats the text of a failed check (kept out of the header so that the
// macro expands to little code at each use).
#include "engine/core/check.h"

namespace mt {

std::string check_message(const char* what, const char* statement, const char* file, int line,
                          const std::string& hint) {
  std::string f(file);
  // Show the path from the repository root, not the build machine's absolute path.
  for (const char* root : {"/engine/", "/data/", "/comm/", "/cuda/", "/app/", "/tests/"}) {
    auto pos = f.rfind(root);
    if (pos != std::string::npos) {
      f = f.substr(pos + 1);
      break;
    }
  }
  std::string msg = str(what, ": `", statement, "` at ", f, ":", line);
  if (!hint.empty()) msg += ": " + hint;
  return msg;
}

}  // namespace mt
