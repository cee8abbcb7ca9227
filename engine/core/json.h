// Why: one JSON type for the whole program (keys keep their order, so files we write read like the
// manifests they came from) and one way in for JSON from outside: a file or a text is first scanned
// for its nesting depth (nlohmann's parser and dump recurse, so a document nested 100k deep would
// overflow the stack), then parsed, and every library exception becomes one InputError naming the source.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "engine/core/check.h"

namespace mt {

using json = nlohmann::ordered_json;

// The deepest nesting of arrays and objects that any JSON document we read may have.
constexpr int kMaxJsonDepth = 64;

// An InputError "where: invalid JSON: nested deeper than ..." if `text` nests arrays and objects
// deeper than kMaxJsonDepth (for readers that parse with another nlohmann type).
void check_json_depth(const std::string& text, const std::string& where);

// Parses `text`; `where` names the source in messages (a file, "path: header"). A syntax error, a
// number out of range or nesting deeper than kMaxJsonDepth is an InputError "where: ...".
json parse_json(const std::string& text, const std::string& where);

// Reads and parses a JSON file with parse_json; a missing file or a folder is an InputError too.
json read_json_file(const std::string& path);

// Runs `fn`, turning a nlohmann exception (a value of the wrong type, a missing key) into an
// InputError "where: ..." so that a reader of outside JSON never ends with a raw library message.
template <typename Fn>
auto with_json_errors(const std::string& where, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const nlohmann::json::exception& e) {
    std::string msg = e.what();
    auto pos = msg.find("] ");
    throw InputError(where + ": " + (pos == std::string::npos ? msg : msg.substr(pos + 2)));
  }
}

}  // namespace mt
