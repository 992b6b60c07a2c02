// Small helpers shared by the sweep sources (spec, runner, slurm, collect): joining and quoting text,
// how values appear in folder names and tables, and reading JSON files and dotted paths. Internal to
// the ilf_experiments library (not installed).
#pragma once
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "ilf/io/config.h"

namespace ilf::detail {

inline std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? separator : "") + parts[i];
  return out;
}

// A shell-readable rendering of a command line (for logs and messages).
inline std::string shell_quote(const std::string& word) {
  if (!word.empty() &&
      word.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+=./:,@%") == std::string::npos)
    return word;
  std::string out = "'";
  for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// A value as it appears in folder names and tables: strings bare, everything else as compact JSON.
inline std::string value_text(const Json& value) { return value.is_string() ? value.get<std::string>() : value.dump(); }

// The JSON object in a file; none when the file is missing, unreadable or not an object.
inline std::optional<Json> read_json_object(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return std::nullopt;  // a fifo would block the open
  std::ifstream in(path);
  if (!in) return std::nullopt;
  try {
    Json j = Json::parse(in);
    if (j.is_object()) return j;
  } catch (const nlohmann::json::exception&) {
  }
  return std::nullopt;
}

// The node at a dotted path ("settings.steps") in a JSON tree; null when there is none.
inline const Json* find_dotted(const Json& root, const std::string& path) {
  const Json* node = &root;
  std::stringstream s(path);
  std::string part;
  while (std::getline(s, part, '.')) {
    if (!node->is_object() || !node->contains(part)) return nullptr;
    node = &(*node)[part];
  }
  return node;
}

}  // namespace ilf::detail
