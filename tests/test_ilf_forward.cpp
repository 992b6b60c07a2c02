// The ilf_forward executable: on the reference inputs it writes `out` and every `hidden.k` equal to
// the official model's (DiT from safetensors, PixArt-alpha from a TorchScript archive with a config
// file, PixArt-alpha MS with non-square latents and micro-conditions); bad input exits non-zero with
// a message naming the problem and leaves no output file.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "ilf/io/safetensors.h"
#include "test_helpers.h"

using namespace ilf;

namespace {

const std::string kTool = std::string(ILF_BINARY_DIR) + "/ilf_forward";

// Runs the tool with `args`; returns its exit code. stdout + stderr go to `log`.
int run_tool(const std::string& args, const std::string& log) {
  const int status = std::system((kTool + " " + args + " > " + log + " 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The tool's output file against the reference io file: out and hidden.0 .. hidden.depth.
void expect_matches_reference(const std::string& output, const std::string& reference, int64_t depth) {
  const TensorMap ours = read_safetensors(output).tensors;
  const TensorMap ref = read_safetensors(test::data_path(reference)).tensors;
  EXPECT_EQ(static_cast<int64_t>(ours.size()), depth + 2);
  std::vector<std::string> keys = {"out"};
  for (int64_t k = 0; k <= depth; ++k) keys.push_back("hidden." + std::to_string(k));
  for (const auto& key : keys) {
    ASSERT_TRUE(ours.count(key)) << key;
    ASSERT_TRUE(ours.at(key).sizes().equals(ref.at(key).sizes())) << key;
    EXPECT_LT(test::relative_error(ours.at(key), ref.at(key)), 1e-5) << reference << " " << key;
  }
}

}  // namespace

TEST(IlfForward, DitCaseReproducesTheReference) {
  const std::string dir = test::scratch_dir("ilf_forward_dit");
  const std::string out = dir + "/out.safetensors";
  const int code = run_tool("--weights " + test::data_path("dit_tiny.weights.safetensors") + " --inputs " +
                                test::data_path("dit_tiny.io.safetensors") + " --out " + out + " --set model.num_heads=4",
                            dir + "/log.txt");
  ASSERT_EQ(code, 0) << read_text(dir + "/log.txt");
  expect_matches_reference(out, "dit_tiny.io.safetensors", 4);
}

TEST(IlfForward, PixArtFromTorchScriptWithAConfigFileReproducesTheReference) {
  const std::string dir = test::scratch_dir("ilf_forward_pixart");
  const std::string out = dir + "/out.safetensors", config = dir + "/run.json";
  std::ofstream(config) << R"({"model": {"variant": "alpha", "num_heads": 4}, "sampling": {"steps": 20}})";
  const int code = run_tool("--weights " + test::data_path("pixart_tiny.torchscript.pt") + " --inputs " +
                                test::data_path("pixart_tiny.io.safetensors") + " --out " + out + " --config " + config,
                            dir + "/log.txt");
  ASSERT_EQ(code, 0) << read_text(dir + "/log.txt");
  expect_matches_reference(out, "pixart_tiny.io.safetensors", 4);
}

TEST(IlfForward, PixArtMsNonSquareCaseReproducesTheReference) {
  const std::string dir = test::scratch_dir("ilf_forward_pixartms");
  const std::string out = dir + "/out.safetensors";
  const int code = run_tool("--weights " + test::data_path("pixartms_tiny.weights.safetensors") + " --inputs " +
                                test::data_path("pixartms_tiny.io.safetensors") + " --out " + out + " --set model.num_heads=4",
                            dir + "/log.txt");
  ASSERT_EQ(code, 0) << read_text(dir + "/log.txt");
  expect_matches_reference(out, "pixartms_tiny.io.safetensors", 3);
}

TEST(IlfForward, BadInputExitsNonZeroAndWritesNothing) {
  const std::string dir = test::scratch_dir("ilf_forward_bad");
  const std::string out = dir + "/out.safetensors";
  // Inputs without the timesteps "t".
  const TensorMap io = read_safetensors(test::data_path("dit_tiny.io.safetensors")).tensors;
  const std::string inputs = dir + "/no_t.safetensors";
  write_safetensors(inputs, {{"x", io.at("x")}, {"y", io.at("y")}});
  const std::string weights = " --weights " + test::data_path("dit_tiny.weights.safetensors");
  EXPECT_NE(run_tool(weights + " --inputs " + inputs + " --out " + out + " --set model.num_heads=4", dir + "/log1.txt"), 0);
  EXPECT_NE(read_text(dir + "/log1.txt").find("\"t\""), std::string::npos) << read_text(dir + "/log1.txt");
  EXPECT_FALSE(std::filesystem::exists(out));
  // An unknown model key.
  EXPECT_NE(run_tool(weights + " --inputs " + test::data_path("dit_tiny.io.safetensors") + " --out " + out +
                         " --set model.num_heads=4 --set model.num_hedas=4",
                     dir + "/log2.txt"),
            0);
  EXPECT_NE(read_text(dir + "/log2.txt").find("model.num_hedas"), std::string::npos) << read_text(dir + "/log2.txt");
  EXPECT_FALSE(std::filesystem::exists(out));
  // Labels outside the table.
  const std::string bad_labels = dir + "/bad_labels.safetensors";
  write_safetensors(bad_labels, {{"x", io.at("x")}, {"t", io.at("t")}, {"y", torch::tensor({1, 2, 99}, torch::kInt64)}});
  EXPECT_NE(run_tool(weights + " --inputs " + bad_labels + " --out " + out + " --set model.num_heads=4", dir + "/log3.txt"), 0);
  EXPECT_NE(read_text(dir + "/log3.txt").find("class labels"), std::string::npos) << read_text(dir + "/log3.txt");
  EXPECT_FALSE(std::filesystem::exists(out));
  // Weights that do not exist.
  EXPECT_NE(run_tool("--weights " + dir + "/absent.safetensors --inputs " + inputs + " --out " + out, dir + "/log4.txt"), 0);
  EXPECT_NE(read_text(dir + "/log4.txt").find("absent.safetensors"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(out));
}
