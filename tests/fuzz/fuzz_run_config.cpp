// Fuzz target: the run config reader with `--set` overrides (ilf::read_run_config_json +
// ilf::parse_run_config), what every tool does first with --config and --set. The input is the config
// file's text, then up to 8 overrides, separated by NUL bytes: "{...}\0sampling.steps=3\0model.depth=2".
#include <string>
#include <vector>

#include "fuzz_input.h"
#include "ilf/config/run_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  size_t begin = 0;
  while (parts.size() < 9) {
    const size_t end = text.find('\0', begin);
    parts.push_back(text.substr(begin, end == std::string::npos ? std::string::npos : end - begin));
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  const std::string path =
      ilf::fuzz::write_input("config.json", reinterpret_cast<const uint8_t*>(parts[0].data()), parts[0].size());
  const std::vector<std::string> overrides(parts.begin() + 1, parts.end());
  ilf::fuzz::expect_clean([&] {
    const ilf::Json json = ilf::read_run_config_json(path, overrides);
    ilf::parse_run_config(json, path);
  });
  return 0;
}
