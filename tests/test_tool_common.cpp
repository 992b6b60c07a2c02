// The command-line tools' shared behaviour (tools/tool_common.h): numeric flags refused the same way by
// every tool (exit 2, one line naming the flag, no output file), run errors as one line with exit
// status 1 and no LibTorch backtrace, and the plan's checks of the model depth.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <tuple>
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

// ---------------------------------------------------------------------------------------------
// Round 2: no silent fallbacks.

TEST(HardeningFlags, AnEmptyOutputPathIsAUsageErrorForEveryTool) {
  // --out "" wrote ./sample.png (ilf_sample) and replaced the shipped models/fashion_mnist/teacache.json
  // (ilf_calibrate); every tool's output path must now be given as a path.
  const std::string dir = test::scratch_dir("hardening_empty_out");
  const std::string config = std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json";
  fs::create_directories(dir + "/images");
  std::ofstream(dir + "/sweep.json") << "{}";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"ilf_sample", "--config " + config + " --out ''"},
      {"ilf_eval", "--config " + config + " --out ''"},
      {"ilf_eval", "--config " + config + " --write-samples ''"},
      {"ilf_calibrate", "--config " + config + " --out ''"},
      {"ilf_forward", "--weights w --inputs i --out ''"},
      {"ilf_prepare_data", "--images " + dir + "/images --vae-encoder e --labels-from-folders --out ''"},
      {"ilf_search", "--config " + config + " --out ''"},
      {"ilf_train", "--config " + config + " --out ''"},
      {"ilf_sweep", "plan " + dir + "/sweep.json --out ''"},
      {"ilf_bench", "--out ''"},
      {"ilf_eval_prompts", "--prompt-set p.txt --out-dir ''"},
      {"ilf_eval_prompts", "--prompt-set p.txt --out-dir d --out ''"},
      {"ilf_eval_prompts", "merge --out-dir ''"},
      {"ilf_fid_stats", "--images " + dir + "/images --inception i --out ''"},
  };
  for (const auto& [tool, args] : cases) {
    const std::string log = dir + "/log.txt";
    const int code = test::run_tool_with_timeout(tool, args, log, 120);
    const std::string text = test::read_file(log);
    EXPECT_EQ(code, cli::kUsageError) << tool << " " << args << ": " << text;
    EXPECT_NE(text.find("empty"), std::string::npos) << tool << " " << args << ": " << text;
  }
}

TEST(HardeningFlags, BudgetFractionZeroIsRefusedInsteadOfSearchingTheDefaultBudget) {
  const std::string dir = test::scratch_dir("hardening_budget_fraction_zero");
  const std::string config = std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json";
  for (const std::string value : {"0", "-0.5", "0.0"}) {
    const int code = test::run_tool_with_timeout(
        "ilf_search", "--config " + config + " --out " + dir + "/search --budget-fraction " + value, dir + "/log.txt", 120);
    const std::string text = test::read_file(dir + "/log.txt");
    EXPECT_EQ(code, cli::kUsageError) << value << ": " << text;
    EXPECT_NE(text.find("--budget-fraction"), std::string::npos) << text;
    EXPECT_FALSE(fs::exists(dir + "/search")) << value;
  }
}

TEST(HardeningOutput, IlfEvalChecksItsOutputPathsBeforeEvaluating) {
  // An unwritable --out was found only after the whole evaluation ran.
  const std::string dir = test::scratch_dir("hardening_eval_out_first");
  const std::string config = std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json";
  for (const std::string flag : {"--out", "--write-samples"}) {
    const std::string log = dir + "/log.txt";
    const int code = test::run_tool_with_timeout(
        "ilf_eval", "--config " + config + " --num-samples 2 --batch 2 " + flag + " " + dir + "/missing/folder/x.json", log, 300);
    const std::string text = test::read_file(log);
    EXPECT_EQ(code, cli::kRunError) << text;
    EXPECT_NE(text.find(flag), std::string::npos) << text;
    EXPECT_NE(text.find(dir + "/missing"), std::string::npos) << text;
    EXPECT_EQ(text.find("2/2 samples"), std::string::npos) << "sampled before the check: " << text;  // no progress line
  }
}

TEST(HardeningOutput, IlfCalibrateDoesNotReplaceAShippedModelFileWithoutItsFlag) {
  // The model's own calibration (an existing file beside its backbone weights) is a shipped model file.
  const std::string dir = test::scratch_dir("hardening_calibrate_shipped");
  const std::string models = std::string(ILF_SOURCE_DIR) + "/models/fashion_mnist";
  fs::create_directories(dir + "/model");
  fs::copy_file(models + "/backbone.safetensors", dir + "/model/backbone.safetensors");
  fs::copy_file(models + "/teacache.json", dir + "/model/teacache.json");
  const std::string shipped = test::read_file(dir + "/model/teacache.json");
  const std::string base = "--config " + std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json --set weights=" + dir +
                           "/model/backbone.safetensors --set sampling.steps=6 --num-samples 2 --batch 2 --degree 1";
  for (const std::string& out : std::vector<std::string>{"", " --out " + dir + "/model/teacache.json"}) {  // default, named
    const int code = test::run_tool_with_timeout("ilf_calibrate", base + out, dir + "/log.txt", 300);
    const std::string text = test::read_file(dir + "/log.txt");
    EXPECT_EQ(code, cli::kRunError) << out << ": " << text;
    EXPECT_NE(text.find("--overwrite-model-file"), std::string::npos) << text;
    EXPECT_EQ(test::read_file(dir + "/model/teacache.json"), shipped) << out;
  }
  // A new file elsewhere is written; with the flag the model's file is replaced.
  EXPECT_EQ(test::run_tool_with_timeout("ilf_calibrate", base + " --out " + dir + "/mine.json", dir + "/log.txt", 300), 0)
      << test::read_file(dir + "/log.txt");
  EXPECT_TRUE(fs::exists(dir + "/mine.json"));
  EXPECT_EQ(test::run_tool_with_timeout("ilf_calibrate", base + " --overwrite-model-file", dir + "/log.txt", 300), 0)
      << test::read_file(dir + "/log.txt");
  EXPECT_NE(test::read_file(dir + "/model/teacache.json"), shipped);
}

// Issue 33: ranges shared by flag, config and --set; counts that cannot run; short messages.

TEST(HardeningRanges, GuidanceBatchAndSizeFlagsOutsideTheirRangeAreRefusedNamingFlagAndRange) {
  const std::string dir = test::scratch_dir("hardening_ranges_flags");
  const std::string out = dir + "/sample.png";
  const std::string config = std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json";
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"ilf_sample", "--cfg 1e20", "from 0 to 1000"},
      {"ilf_sample", "--cfg 1e308", "from 0 to 1000"},
      {"ilf_sample", "--batch 9223372036854775807", "from 1 to 1000000"},
      {"ilf_sample", "--prompt x --height 4294967328", "from 1 to 16384"},
      {"ilf_eval", "--batch 9223372036854775807", "from 1 to 1000000"},
      {"ilf_calibrate", "--batch 9223372036854775807", "from 1 to 1000000"},
      {"ilf_search", "--budget-fraction 1e308", "from 0 to 100"},
  };
  for (const auto& [tool, flags, range] : cases) {
    const std::string log = dir + "/log.txt";
    const int code = test::run_tool(tool, "--config " + config + " --out " + out + " " + flags, log);
    const std::string text = test::read_file(log);
    const std::string flag = flags.substr(flags.rfind("--"), flags.find(' ', flags.rfind("--")) - flags.rfind("--"));
    EXPECT_EQ(code, cli::kUsageError) << tool << " " << flags << ": " << text;
    EXPECT_NE(text.find(flag), std::string::npos) << flags << ": " << text;
    EXPECT_NE(text.find(range), std::string::npos) << flags << ": " << text;
    EXPECT_FALSE(fs::exists(out)) << flags;
  }
  // ilf_prepare_data: a resolution beyond int was cut to 32; latent scales that give NaN or zero latents.
  for (const auto& [flags, range] :
       std::vector<std::pair<std::string, std::string>>{{"--resolution 4294967328", "from 1 to 16384"},
                                                        {"--latent-scale inf", "from 0.0001 to 10000"},
                                                        {"--latent-scale 1e308", "from 0.0001 to 10000"},
                                                        {"--latent-scale 1e-320", "from 0.0001 to 10000"}}) {
    const int code = test::run_tool("ilf_prepare_data",
                                    "--images " + dir + " --labels-from-folders --vae-encoder " +
                                        test::data_path("tiny_vae_encoder.pt") + " --out " + dir + "/shards " + flags,
                                    dir + "/log.txt");
    const std::string text = test::read_file(dir + "/log.txt");
    EXPECT_EQ(code, cli::kUsageError) << flags << ": " << text;
    EXPECT_NE(text.find(flags.substr(0, flags.find(' '))), std::string::npos) << flags << ": " << text;
    EXPECT_NE(text.find(range), std::string::npos) << flags << ": " << text;
    EXPECT_FALSE(fs::exists(dir + "/shards")) << flags;
  }
}

TEST(HardeningRanges, ConfigAndSetAgreeWithTheFlagOnGuidance) {
  // --cfg -1 is refused as a usage error; the same value (and 1e20) through --set is refused naming the key.
  const std::string dir = test::scratch_dir("hardening_ranges_set");
  const std::string config = std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json";
  for (const std::string value : {"-1", "-1e308", "1e20"}) {
    const int code = test::run_tool("ilf_sample",
                                    "--config " + config + " --set sampling.guidance_scale=" + value + " --out " + dir + "/x.png",
                                    dir + "/log.txt");
    const std::string text = test::read_file(dir + "/log.txt");
    EXPECT_EQ(code, cli::kRunError) << value << ": " << text;
    EXPECT_NE(text.find("sampling.guidance_scale"), std::string::npos) << text;
    EXPECT_NE(text.find("from 0 to 1000"), std::string::npos) << text;
    EXPECT_FALSE(fs::exists(dir + "/x.png"));
  }
}

TEST(HardeningRanges, IlfCalibrateAtGuidance1e308IsRefusedNamingTheKeyAndRangeAndWritesNothing) {
  // ilf_calibrate wrote 16 null coefficients at exit 0 with guidance 1e308. It has no guidance flag: the
  // value comes from --set or the config file, and both are refused naming the key and the range before
  // anything is sampled (the counts are small, so that a regression fails fast instead of calibrating).
  const std::string dir = test::scratch_dir("hardening_calibrate_guidance");
  const std::string source = ILF_SOURCE_DIR;
  std::string config = test::read_file(source + "/configs/fashion_mnist.json");
  const std::string guidance = "\"guidance_scale\": 2.0";
  ASSERT_NE(config.find(guidance), std::string::npos);
  config.replace(config.find(guidance), guidance.size(), "\"guidance_scale\": 1e308");
  for (size_t at = config.find("\"../models/"); at != std::string::npos; at = config.find("\"../models/", at))
    config.replace(at + 1, 2, source);  // the paths relative to configs/, as absolute ones
  std::ofstream(dir + "/guidance_1e308.json") << config;
  const std::string small = " --set sampling.steps=6 --num-samples 2 --batch 2 --degree 1 --out " + dir + "/teacache.json";
  for (const std::string& args :
       {"--config " + source + "/configs/fashion_mnist.json --set sampling.guidance_scale=1e308" + small,
        "--config " + dir + "/guidance_1e308.json" + small,
        "--model-folder " + source + "/models/fashion_mnist_t2i --prompts-file " + source +
            "/models/fashion_mnist_t2i/captions_eval.txt --set sampling.guidance_scale=1e308" + small}) {
    const int code = test::run_tool_with_timeout("ilf_calibrate", args, dir + "/log.txt", 300);
    const std::string text = test::read_file(dir + "/log.txt");
    EXPECT_EQ(code, cli::kRunError) << args << ": " << text;
    EXPECT_NE(text.find("sampling.guidance_scale"), std::string::npos) << args << ": " << text;
    EXPECT_NE(text.find("from 0 to 1000"), std::string::npos) << args << ": " << text;
    EXPECT_FALSE(fs::exists(dir + "/teacache.json")) << args << ": " << text;
  }
}

TEST(HardeningMessages, LongFlagValuesAreNotEchoedInFull) {
  const std::string dir = test::scratch_dir("hardening_long_value");
  const std::string value(100000, '7');
  const int code = test::run_tool("ilf_sample", "--steps x" + value, dir + "/log.txt");
  const std::string text = test::read_file(dir + "/log.txt");
  EXPECT_EQ(code, cli::kUsageError) << text.substr(0, 300);
  EXPECT_NE(text.find("--steps"), std::string::npos) << text.substr(0, 300);
  EXPECT_LT(text.size(), 400u) << text.substr(0, 300);
  EXPECT_NE(text.find("(100001 bytes)"), std::string::npos) << text.substr(0, 300);
}

TEST(HardeningMessages, TorchScriptTracebacksAreCutToTheLineThatSaysWhatFailed) {
  try {
    TORCH_CHECK(false,
                "The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript, serialized code "
                "(most recent call last):\n  File \"code/__torch__/vae.py\", line 12, in forward\n    x = conv(x)\n"
                "RuntimeError: Given groups=1, weight of size [8, 3, 3, 3], expected input[1, 4, 8, 8] to have 3 channels\n");
    ADD_FAILURE() << "TORCH_CHECK did not throw";
  } catch (const c10::Error& e) {
    const std::string line = short_torch_error(e);
    EXPECT_EQ(line.rfind("RuntimeError: Given groups=1", 0), 0u) << line;
    EXPECT_EQ(line.find('\n'), std::string::npos) << line;
    EXPECT_EQ(cli::current_error_message().find("Traceback"), std::string::npos);
  }
  // The interpreter also throws plain std::runtime_error with the same traceback.
  try {
    throw std::runtime_error(
        "The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript, serialized code (most "
        "recent call last):\n  File \"code/__torch__.py\", line 10, in forward\n    _0 = (conv).forward(x)\n"
        "RuntimeError: expected input[1, 4, 1, 1] to have 3 channels, but got 4 channels instead\n");
  } catch (const std::exception& e) {
    EXPECT_EQ(short_torch_error(e).rfind("RuntimeError: expected input", 0), 0u) << short_torch_error(e);
    const std::string line = cli::current_error_message();
    EXPECT_EQ(line.rfind("RuntimeError: expected input", 0), 0u) << line;
    EXPECT_EQ(line.find("Traceback"), std::string::npos) << line;
  }
  EXPECT_EQ(abbreviated(std::string(10, 'a'), 80), std::string(10, 'a'));
  EXPECT_EQ(abbreviated(std::string(100, 'a'), 80), std::string(80, 'a') + "... (100 bytes)");
  EXPECT_EQ(abbreviated("ab\xc3\xa9", 3), "ab... (4 bytes)");  // not inside a character
  EXPECT_EQ(ceil_div(9223372036854775807LL, 9223372036854775807LL), 1);
  EXPECT_EQ(ceil_div(5, 9223372036854775807LL), 1);
  EXPECT_EQ(ceil_div(0, 3), 0);
  EXPECT_EQ(ceil_div(7, 2), 4);
}

}  // namespace
}  // namespace ilf
