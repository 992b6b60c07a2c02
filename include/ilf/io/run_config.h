// Run configs shared by the tools: one JSON file with the sections "model", "weights", "ilf",
// "cache", "sampling" (with the solver settings), "vae", "text", "training", "data", "eval", plus `--set key=value` overrides.
// Each tool reads the sections it uses; the sections that belong to other tools are skipped as a
// whole (they are validated by the tool that reads them), and any other top-level key is an error.
#pragma once
#include <string>
#include <vector>

#include "ilf/io/config.h"

namespace ilf {

// Loads `path` (an empty path gives an empty config) and applies the overrides in order.
Json load_run_config(const std::string& path, const std::vector<std::string>& overrides);

// The top-level sections every ILF tool accepts.
const std::vector<std::string>& run_config_sections();

// Marks the given sections as read (they belong to another tool), then checks that no key anywhere
// in the config was left unread: typos and unknown sections become errors naming their path.
void finish_run_config(ConfigReader& reader, const std::vector<std::string>& sections_owned_by_other_tools);

}  // namespace ilf

namespace ilf {

// A file path from a config: absolute or existing relative to the working directory as given;
// otherwise relative to the folder of the config file (so configs can name files beside them).
std::string resolve_config_path(const ConfigReader& reader, const std::string& value);

}  // namespace ilf
