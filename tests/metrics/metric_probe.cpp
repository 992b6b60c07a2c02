// ilf_metric_probe's entry point: dispatches to the subcommands the probe_*.cpp files register
// (metric_probe.h). Errors print one line and exit 1 (tool_common.h's report).
#include "metric_probe.h"

#include <iostream>
#include <map>

namespace ilf::test {
namespace {
std::map<std::string, ProbeFunction>& probes() {
  static std::map<std::string, ProbeFunction> table;
  return table;
}
}  // namespace

ProbeRegistration::ProbeRegistration(const char* name, ProbeFunction function) { probes()[name] = function; }

}  // namespace ilf::test

int main(int argc, char** argv) {
  const auto& table = ilf::test::probes();
  const auto it = argc >= 2 ? table.find(argv[1]) : table.end();
  if (it == table.end()) {
    std::cerr << "usage: ilf_metric_probe <subcommand> [flags]; subcommands:";
    for (const auto& [name, function] : table) std::cerr << " " << name;
    std::cerr << std::endl;
    return 2;
  }
  return it->second(argc - 1, argv + 1);
}
