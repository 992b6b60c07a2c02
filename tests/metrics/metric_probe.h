// ilf_metric_probe: the C++ half of the metric parity checks in tests/metrics/. Each check_*.py builds
// the reference package's model with random weights (the real architecture, reduced sizes), saves it
// in the format users have, runs the package on images and prompts, and runs this program on the same
// files; the program writes what the library's metric code returns to a safetensors file that the
// Python side compares with the package's outputs.
// Each probe_*.cpp registers its subcommands:
//   static const ilf::test::ProbeRegistration r("clip-score", &run_clip_score);
// and `ilf_metric_probe <subcommand> [flags]` runs one (flags parsed by the subcommand with CLI11).
#pragma once
#include <string>
#include <vector>

namespace ilf::test {

using ProbeFunction = int (*)(int argc, char** argv);  // argv[0] is the subcommand's name

struct ProbeRegistration {
  ProbeRegistration(const char* name, ProbeFunction function);
};

}  // namespace ilf::test
