// Run-config loading and the final unknown-key check (see include/ilf/io/run_config.h).
#include "ilf/io/run_config.h"

#include <algorithm>

namespace ilf {

Json load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  Json config = path.empty() ? Json::object() : load_json_file(path);
  for (const auto& o : overrides) apply_override(config, o);
  return config;
}

const std::vector<std::string>& run_config_sections() {
  static const std::vector<std::string> sections = {"model", "weights", "ilf",      "cache", "sampling",
                                                    "vae",   "text",    "training", "data",  "eval",     "output"};
  return sections;
}

void finish_run_config(ConfigReader& reader, const std::vector<std::string>& sections_owned_by_other_tools) {
  for (const auto& key : reader.json().items()) {
    const auto& known = run_config_sections();
    if (std::find(known.begin(), known.end(), key.key()) == known.end()) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      throw Error(reader.source() + ": unknown top-level key \"" + key.key() + "\" (expected one of " + list + ")");
    }
  }
  for (const auto& section : sections_owned_by_other_tools)
    if (reader.has(section)) reader.mark_used(section);
  reader.check_all_used();
}

}  // namespace ilf

#include <filesystem>

namespace ilf {

std::string resolve_config_path(const ConfigReader& reader, const std::string& value) {
  namespace fs = std::filesystem;
  const fs::path p(value);
  if (p.is_absolute() || fs::exists(p)) return value;
  const fs::path beside = fs::path(reader.source()).parent_path() / p;
  return fs::exists(beside) ? beside.string() : value;
}

}  // namespace ilf
