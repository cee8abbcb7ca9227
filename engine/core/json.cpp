// Why: see json.h. The depth scan walks the text once, skipping strings, before nlohmann sees it.
#include "engine/core/json.h"

#include <filesystem>

#include "engine/core/io.h"

namespace fs = std::filesystem;

namespace mt {

namespace {

// The deepest nesting of [ and { outside strings (an unterminated string ends the scan; the parser
// then reports it).
int json_depth(const std::string& text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

void check_json_depth(const std::string& text, const std::string& where) {
  MT_INPUT(json_depth(text) <= kMaxJsonDepth, where, ": invalid JSON: nested deeper than ", kMaxJsonDepth,
           " levels");
}

json parse_json(const std::string& text, const std::string& where) {
  check_json_depth(text, where);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    std::string msg = e.what();
    auto pos = msg.find("] ");
    throw InputError(str(where, ": invalid JSON: ", pos == std::string::npos ? msg : msg.substr(pos + 2)));
  }
}

json read_json_file(const std::string& path) {
  std::error_code ec;
  MT_INPUT(fs::exists(path, ec), path, ": cannot open (no such file)");
  MT_INPUT(!fs::is_directory(path, ec), path, ": is a folder, expected a JSON file");
  return parse_json(read_text(path), path);
}

}  // namespace mt
