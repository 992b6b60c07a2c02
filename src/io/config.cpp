// JSON configuration reader with unknown-key detection (see include/ilf/io/config.h).
#include "ilf/io/config.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "ilf/io/atomic_file.h"
#include "ilf/io/json.h"

namespace ilf {
namespace {

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '.')) parts.push_back(part);
  return parts;
}

}  // namespace

Json load_json_file(const std::string& path) {
  require_regular_file(path, "JSON file");
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open config file");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    return parse_json_strict(text, path, /*ignore_comments=*/true);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(path + ": invalid JSON (" + e.what() + ")");
  }
}

void apply_override(Json& config, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) throw Error("--set " + assignment + ": expected key=value, e.g. sampling.steps=10");
  if (!is_valid_utf8(assignment)) throw Error("--set: the override is not valid UTF-8 text (config keys and values must be)");
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  Json value;
  try {
    value = parse_json_strict(text, "--set " + key);
  } catch (const nlohmann::json::parse_error&) {
    value = text;
  }
  Json* node = &config;
  const auto parts = split_path(key);
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!node->is_object())  // i == 0: the config itself is not an object (fuzzing found parts[-1] read here)
      throw Error("--set " + assignment + ": " + (i == 0 ? std::string("the config's top level") : parts[i - 1]) +
                  " is not an object");
    if (i + 1 == parts.size()) {
      (*node)[parts[i]] = value;
    } else {
      if (!node->contains(parts[i])) (*node)[parts[i]] = Json::object();
      node = &(*node)[parts[i]];
    }
  }
}

ConfigReader::ConfigReader(Json config, std::string source) : config_(std::move(config)), source_(std::move(source)) {
  if (!config_.is_object()) throw Error(source_ + ": the top level must be a JSON object");
}

// The node at `path`, or null when it (or an object above it) is absent or null. An object above it
// that holds something else is a type error naming that key ("sampling": 3 -> "sampling" must be an
// object), not an unknown key.
const Json* ConfigReader::find(const std::string& path) const {
  const Json* node = &config_;
  std::string prefix;
  for (const auto& part : split_path(path)) {
    if (node->is_null()) return nullptr;
    if (!node->is_object()) throw type_error(prefix, "an object (of settings such as \"" + path + "\")", *node);
    if (!node->contains(part)) return nullptr;
    node = &(*node)[part];
    prefix = prefix.empty() ? part : prefix + "." + part;
  }
  return node->is_null() ? nullptr : node;
}

bool ConfigReader::has(const std::string& path) const { return find(path) != nullptr; }

const Json& ConfigReader::at(const std::string& path) const {
  const Json* node = find(path);
  if (!node) throw Error(source_ + ": missing required key \"" + path + "\"");
  return *node;
}

void ConfigReader::mark_used(const std::string& path) {
  // A key counts as read together with every object above it.
  const auto parts = split_path(path);
  std::string prefix;
  for (const auto& part : parts) {
    prefix = prefix.empty() ? part : prefix + "." + part;
    used_.insert(prefix);
  }
  used_.insert(path + ".*");
}

std::string ConfigReader::file_path(const std::string& path, const std::string& fallback) {
  file_keys_.insert(path);
  const std::string value = get<std::string>(path, fallback);
  return value.empty() ? value : resolve_config_path(*this, value);
}

std::string ConfigReader::choice(const std::string& path, const std::string& fallback, const std::vector<std::string>& allowed) {
  const std::string value = get<std::string>(path, fallback);
  for (const auto& a : allowed)
    if (value == a) return value;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  throw invalid(path, "one of " + list + " (got \"" + value + "\")");
}

void ConfigReader::collect_unused(const Json& node, const std::string& prefix, std::vector<std::string>& out) const {
  if (!prefix.empty() && used_.count(prefix + ".*")) return;  // the whole subtree was consumed
  if (node.is_null()) return;                                 // null means "unset" (e.g. --set weights=null)
  if (!node.is_object()) {
    if (!used_.count(prefix)) out.push_back(prefix);
    return;
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string path = prefix.empty() ? it.key() : prefix + "." + it.key();
    // An unread top-level section is named by its keys ("fora.intervall", not "fora"): the section
    // itself is known (run configs check top-level names first), its spelling mistakes are inside.
    if (!used_.count(path) && !it->is_null() && !(prefix.empty() && it->is_object() && !it->empty())) {
      out.push_back(path);
      continue;
    }
    collect_unused(*it, path, out);
  }
}

void ConfigReader::check_all_used() const {
  std::vector<std::string> unused;
  collect_unused(config_, "", unused);
  if (unused.empty()) return;
  // At most 10 names: one message listed 20,000 keys (149 KB).
  constexpr size_t kShown = 10;
  std::string list;
  for (size_t i = 0; i < unused.size() && i < kShown; ++i)
    list += (list.empty() ? "" : ", ") + std::string("\"") + unused[i] + "\"";
  if (unused.size() > kShown) list += " and " + std::to_string(unused.size() - kShown) + " more";
  throw Error(source_ + ": unknown key" + (unused.size() > 1 ? "s " : " ") + list +
              " (check the spelling; see configs/ for the accepted keys)");
}

Error ConfigReader::invalid(const std::string& path, const std::string& expectation) const {
  return Error(source_ + ": \"" + path + "\" must be " + expectation);
}

Error ConfigReader::type_error(const std::string& path, const std::string& expected, const Json& found) const {
  return Error(source_ + ": \"" + path + "\" must be " + expected + ", got " + found.dump());
}

std::string resolve_config_path(const ConfigReader& reader, const std::string& value) {
  namespace fs = std::filesystem;
  const fs::path p(value);
  if (p.is_absolute() || fs::exists(p)) return value;
  const fs::path beside = fs::path(reader.source()).parent_path() / p;
  return fs::exists(beside) ? beside.string() : value;
}

}  // namespace ilf
