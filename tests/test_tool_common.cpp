// The command-line tools' shared behaviour (tools/tool_common.h): numeric flags refused the same way by
// every tool (exit 2, one line naming the flag, no output file), run errors as one line with exit
// status 1 and no LibTorch backtrace, and the plan's checks of the model depth.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "../tools/tool_common.h"
#include "test_helpers.h"
#include "tool_test_support.h"

namespace ilf {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Flags: one shared check for every tool (tools/tool_common.h).

TEST(HardeningFlags, BadNumericFlagsAreRefusedNamingTheFlagWithNoOutput) {
  const std::string dir = test::scratch_dir("hardening_flags");
  const std::string out = dir + "/sample.png";
  const std::string config = std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--steps 0", "--steps"},
      {"--steps -1", "--steps"},
      {"--batch 0", "--batch"},
      {"--cfg nan", "--cfg"},
      {"--cfg inf", "--cfg"},
      {"--cfg -2", "--cfg"},
      {"--seed -1", "--seed"},
      {"--seed 18446744073709551616", "--seed"},
      {"--seed 99999999999999999999999", "--seed"},
      {"--steps 1e3", "--steps"},
  };
  for (const auto& [flags, name] : cases) {
    const std::string log = dir + "/log.txt";
    const int code = test::run_tool("ilf_sample", "--config " + config + " --out " + out + " " + flags, log);
    const std::string text = test::read_file(log);
    EXPECT_EQ(code, cli::kUsageError) << flags << ": " << text;
    EXPECT_NE(text.find(name), std::string::npos) << flags << ": " << text;
    EXPECT_EQ(test::line_count(text), 1u) << flags << ": " << text;
    EXPECT_FALSE(fs::exists(out)) << flags;
  }
  // The other tools share the checks.
  for (const std::string tool : {"ilf_eval", "ilf_calibrate"}) {
    const int code = test::run_tool(tool, "--config " + config + " --seed -1 --out " + dir + "/x.json", dir + "/log.txt");
    EXPECT_EQ(code, cli::kUsageError) << tool << ": " << test::read_file(dir + "/log.txt");
    EXPECT_NE(test::read_file(dir + "/log.txt").find("--seed"), std::string::npos);
    EXPECT_FALSE(fs::exists(dir + "/x.json"));
  }
}

TEST(HardeningFlags, BadSearchSpaceListsAreRefusedNamingTheFlagWithNoOutput) {
  const std::string dir = test::scratch_dir("hardening_search_flags");
  const std::string config = std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json";
  for (const auto& [flags, name] : std::vector<std::pair<std::string, std::string>>{{"--t-post none,anneel", "--t-post"},
                                                                                    {"--anneal-floors 5,x", "--anneal-floors"},
                                                                                    {"--anneal-scales -1", "--anneal-scales"},
                                                                                    {"--cache inside", "--cache"},
                                                                                    {"--strengths 1,-0.5", "--strengths"}}) {
    const int code = test::run_tool("ilf_search", "--config " + config + " --out " + dir + "/search " + flags, dir + "/log.txt");
    const std::string text = test::read_file(dir + "/log.txt");
    EXPECT_EQ(code, cli::kUsageError) << flags << ": " << text;
    EXPECT_NE(text.find(name), std::string::npos) << flags << ": " << text;
    EXPECT_EQ(test::line_count(text), 1u) << flags << ": " << text;
    EXPECT_FALSE(fs::exists(dir + "/search")) << flags;
  }
}

TEST(HardeningFlags, SeedTakesTheWholeUint64RangeInDecimal) {
  auto parse_seed = [](const std::string& value) {
    CLI::App app;
    uint64_t seed = 0;
    app.add_option("--seed", seed)->transform(cli::Seed);
    std::vector<std::string> args = {"--seed", value};
    std::reverse(args.begin(), args.end());
    app.parse(args);
    return seed;
  };
  EXPECT_EQ(parse_seed("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(parse_seed("0"), 0u);
  EXPECT_THROW(parse_seed("18446744073709551616"), CLI::ValidationError);
  EXPECT_THROW(parse_seed("-1"), CLI::ValidationError);
  EXPECT_THROW(parse_seed("0x10"), CLI::ValidationError);
  EXPECT_EQ(parse_seed("010"), 10u);  // decimal, not octal
}

// ---------------------------------------------------------------------------------------------
// Messages: one line, no LibTorch backtrace, exit status below 128.

TEST(HardeningMessages, LibTorchErrorsArePrintedWithoutTheirBacktrace) {
  try {
    TORCH_CHECK(false, "Dimension out of range (expected to be in range of [-1, 0], but got 3)");
    ADD_FAILURE() << "TORCH_CHECK did not throw";
  } catch (const c10::Error&) {
    const std::string line = cli::current_error_message();
    EXPECT_NE(line.find("Dimension out of range"), std::string::npos) << line;
    EXPECT_EQ(line.find("frame #"), std::string::npos) << line;
    EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  }
}

TEST(HardeningMessages, ARunErrorIsOneLineAndExitsWithOne) {
  const std::string dir = test::scratch_dir("hardening_run_error");
  const int code = test::run_tool("ilf_sample",
                                  "--config " + std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json --set weights=" + dir +
                                      "/absent.safetensors --out " + dir + "/x.png",
                                  dir + "/log.txt");
  EXPECT_EQ(code, 1) << test::read_file(dir + "/log.txt");
  EXPECT_EQ(test::line_count(test::read_file(dir + "/log.txt")), 1u) << test::read_file(dir + "/log.txt");
  EXPECT_NE(test::read_file(dir + "/log.txt").find("absent.safetensors"), std::string::npos);
}

TEST(HardeningLimits, PlanValidatesTheModelDepth) {
  const std::string dir = test::scratch_dir("hardening_plan_depth");
  const int code = test::run_tool(
      "ilf_sample", "--config " + std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json --plan --set model.depth=1e9",
      dir + "/log.txt");
  EXPECT_EQ(code, 1) << test::read_file(dir + "/log.txt");
  EXPECT_NE(test::read_file(dir + "/log.txt").find("model.depth"), std::string::npos) << test::read_file(dir + "/log.txt");
}

}  // namespace
}  // namespace ilf
