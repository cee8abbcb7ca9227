// Why: one JSON type for the whole program (keys keep their order, so files we write read like the
// manifests they came from) and one reader of JSON files.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace mt {

using json = nlohmann::ordered_json;

// Reads a JSON file; a missing file or a syntax error is an InputError naming the file.
json read_json_file(const std::string& path);

}  // namespace mt
