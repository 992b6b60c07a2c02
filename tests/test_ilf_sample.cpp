// ilf_sample as a user meets it: `--plan` needs only the architecture keys (no model folder, weights or
// text encoder); small images are written enlarged by an integer factor whose pixel blocks are the
// sampled pixels unchanged (`--no-enlarge` writes those pixels as they are); progress on a pipe or in a
// file is whole lines without '\r', none with --quiet (util/progress.h, also ilf_eval's).
#include <gtest/gtest.h>
#include <sys/wait.h>

// The test's own PNG decoder (static: independent of the library's copy).
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#if __has_include(<stb/stb_image.h>)
#include <stb/stb_image.h>
#else
#include <stb_image.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "ilf/experiments/search/search_run.h"
#include "ilf/io/image.h"
#include "ilf/io/safetensors.h"
#include "ilf/pipelines/calibration.h"
#include "ilf/pipelines/data_preparation.h"
#include "ilf/pipelines/evaluation.h"
#include "ilf/pipelines/forward_dump.h"
#include "ilf/pipelines/sample_files.h"
#include "ilf/training/options.h"
#include "ilf/util/device.h"
#include "ilf/util/progress.h"
#include "test_helpers.h"
#include "tool_test_support.h"

namespace ilf {
namespace {

// Runs ilf_sample from the source folder with stdout and stderr in separate files; returns the exit status.
int run_sample(const std::string& args, const std::string& out, const std::string& err) {
  const std::string command = "cd " + std::string(ILF_SOURCE_DIR) + " && " + std::string(ILF_BINARY_DIR) + "/ilf_sample " + args +
                              " > " + out + " 2> " + err;
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A PNG's pixels as stb_image decodes them (its own decoder, not the writer's code).
struct Pixels {
  int width = 0, height = 0, channels = 0;
  std::vector<unsigned char> data;  // (height, width, channels) row-major
};
Pixels decode_png(const std::string& path) {
  Pixels p;
  unsigned char* data = stbi_load(path.c_str(), &p.width, &p.height, &p.channels, 0);
  if (!data) return p;
  p.data.assign(data, data + static_cast<size_t>(p.width) * p.height * p.channels);
  stbi_image_free(data);
  return p;
}

// ---- --plan ----------------------------------------------------------------------------------

TEST(IlfSamplePlan, APixArtConfigWithoutItsModelFolderPlansFromModelDepth) {
  const std::string dir = test::scratch_dir("ilf_sample_plan_no_folder");
  // configs/pixart_alpha_512.json names models/pixart_alpha_512, which is not in the repository.
  ASSERT_FALSE(std::filesystem::exists(std::string(ILF_SOURCE_DIR) + "/models/pixart_alpha_512/model.json"));
  for (const std::string extra : {"", " --prompt \"a corgi\""}) {
    ASSERT_EQ(run_sample("--config configs/pixart_alpha_512.json --set model.depth=28 --plan" + extra, dir + "/plan.json",
                         dir + "/err.txt"),
              0)
        << extra << ": " << test::read_file(dir + "/err.txt");
    const nlohmann::json plan = nlohmann::json::parse(test::read_file(dir + "/plan.json"));
    // The paper's ILF setting: 10 steps of 28 blocks, feedback (inner loop 8..19 again, 12 blocks, plus
    // the feedback module's block) on the first 2 and last 2 steps.
    EXPECT_EQ(plan.at("total_block_forwards"), 28 * 10 + (12 + 1) * 4) << extra;
    EXPECT_EQ(plan.at("depth"), 28);
  }
  // An absent --model-folder, too; without model.depth the error names the key.
  ASSERT_EQ(run_sample("--model-folder " + dir + "/absent --prompt x --set model.depth=4 --method baseline --steps 3 --plan",
                       dir + "/plan.json", dir + "/err.txt"),
            0)
      << test::read_file(dir + "/err.txt");
  EXPECT_EQ(nlohmann::json::parse(test::read_file(dir + "/plan.json")).at("total_block_forwards"), 4 * 3);
  EXPECT_EQ(run_sample("--config configs/pixart_alpha_512.json --plan", dir + "/plan.json", dir + "/err.txt"), 1);
  EXPECT_NE(test::read_file(dir + "/err.txt").find("model.depth"), std::string::npos) << test::read_file(dir + "/err.txt");
}

TEST(IlfSamplePlan, ADiTConfigPlansWithoutItsWeights) {
  const std::string dir = test::scratch_dir("ilf_sample_plan_dit");
  ASSERT_EQ(run_sample("--config configs/train/dit_xl2_256.json --plan --set sampling.method=baseline --steps 20",
                       dir + "/plan.json", dir + "/err.txt"),
            0)
      << test::read_file(dir + "/err.txt");
  EXPECT_EQ(nlohmann::json::parse(test::read_file(dir + "/plan.json")).at("total_block_forwards"), 28 * 20);
}

// ---- enlargement -----------------------------------------------------------------------------

TEST(IlfSampleEnlarge, TheFactorIsTheSmallestThatReaches256OnTheShorterSide) {
  EXPECT_EQ(enlargement_factor(28, 28), 10);  // 280 >= 256 > 252
  EXPECT_EQ(enlargement_factor(84, 112), 4);  // 336 >= 256 > 252
  EXPECT_EQ(enlargement_factor(64, 64), 4);   // exactly 256
  EXPECT_EQ(enlargement_factor(65, 300), 4);  // 260; 3 gives 195
  EXPECT_EQ(enlargement_factor(256, 512), 1);
  EXPECT_EQ(enlargement_factor(1024, 1024), 1);
  const torch::Tensor image = torch::tensor({0.f, 1.f, 2.f, 3.f, 4.f, 5.f}).reshape({1, 2, 3});
  const torch::Tensor big = enlarge_image(image, 2);  // (1, 4, 6)
  ASSERT_EQ(big.sizes().vec(), (std::vector<int64_t>{1, 4, 6}));
  EXPECT_EQ(big[0][3][5].item<float>(), 5.f);
  EXPECT_EQ(big[0][2][1].item<float>(), 3.f);
  EXPECT_EQ(big[0][1][2].item<float>(), 1.f);
}

// Both files of one ilf_sample command, written with and without --no-enlarge: every k x k block of the
// enlarged PNG is the original pixel, and the metadata records k.
void expect_blocks_of_the_original(const std::string& args, const std::string& dir) {
  ASSERT_EQ(run_sample(args + " --out " + dir + "/big.png", dir + "/log.txt", dir + "/err.txt"), 0)
      << test::read_file(dir + "/err.txt");
  ASSERT_EQ(run_sample(args + " --no-enlarge --out " + dir + "/small.png", dir + "/log.txt", dir + "/err.txt"), 0)
      << test::read_file(dir + "/err.txt");
  const Pixels big = decode_png(dir + "/big.png"), small = decode_png(dir + "/small.png");
  ASSERT_GT(small.width, 0);
  ASSERT_LT(std::min(small.width, small.height), 256);
  const int k = (256 + std::min(small.width, small.height) - 1) / std::min(small.width, small.height);
  ASSERT_EQ(big.width, small.width * k);
  ASSERT_EQ(big.height, small.height * k);
  ASSERT_EQ(big.channels, small.channels);
  std::vector<unsigned char> downsampled;  // pixel (k*y + dy, k*x + dx) must equal pixel (y, x) for all dy, dx
  bool blocks_uniform = true;
  for (int y = 0; y < big.height; ++y)
    for (int x = 0; x < big.width; ++x)
      for (int c = 0; c < big.channels; ++c) {
        const unsigned char v = big.data[(static_cast<size_t>(y) * big.width + x) * big.channels + c];
        const unsigned char corner = big.data[(static_cast<size_t>(y / k * k) * big.width + x / k * k) * big.channels + c];
        blocks_uniform = blocks_uniform && v == corner;
        if (y % k == 0 && x % k == 0) downsampled.push_back(v);
      }
  EXPECT_TRUE(blocks_uniform);
  EXPECT_EQ(downsampled, small.data);
  const nlohmann::json enlarged = nlohmann::json::parse(read_png_text(dir + "/big.png").at("ilf"));
  const nlohmann::json original = nlohmann::json::parse(read_png_text(dir + "/small.png").at("ilf"));
  EXPECT_EQ(enlarged.at("enlarged"), k);
  EXPECT_FALSE(original.contains("enlarged"));
}

TEST(IlfSampleEnlarge, AGridIsWrittenEnlargedWithEachBlockTheOriginalPixel) {
  expect_blocks_of_the_original("--config configs/fashion_mnist.json --batch 4 --steps 4",
                                test::scratch_dir("ilf_sample_enlarge_grid"));
}

TEST(IlfSampleEnlarge, ASingleImageIsAtLeast256PixelsPerSide) {
  const std::string dir = test::scratch_dir("ilf_sample_enlarge_single");
  expect_blocks_of_the_original("--config configs/fashion_mnist.json --class 7 --batch 1 --steps 4", dir);
  const Pixels big = decode_png(dir + "/big.png");
  EXPECT_GE(big.width, 256);
  EXPECT_GE(big.height, 256);
}

// ---- progress --------------------------------------------------------------------------------

TEST(Progress, LinesModeWritesWholeLinesAtMostOnePerTenthAndTheLast) {
  std::ostringstream out;
  {
    Progress progress(Progress::Mode::kLines, &out, /*min_seconds_between_lines=*/1e9);
    for (int i = 1; i <= 97; ++i) progress.update("step " + std::to_string(i) + "/97", i, 97);
  }
  const std::string text = out.str();
  EXPECT_EQ(text.find('\r'), std::string::npos);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  EXPECT_LE(test::line_count(text), 11u) << text;
  EXPECT_GE(test::line_count(text), 10u) << text;
  EXPECT_NE(text.find("step 97/97\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("step 2/97\n"), std::string::npos) << text;  // same tenth as step 1
}

TEST(Progress, TerminalModeRewritesOneLineAndQuietWritesNothing) {
  std::ostringstream terminal, quiet;
  {
    Progress live(Progress::Mode::kTerminal, &terminal);
    Progress none(Progress::Mode::kQuiet, &quiet);
    for (int i = 1; i <= 3; ++i) {
      live.update("step " + std::to_string(i) + "/3", i, 3);
      none.update("step " + std::to_string(i) + "/3", i, 3);
    }
  }
  EXPECT_EQ(terminal.str(), "\rstep 1/3\rstep 2/3\rstep 3/3\n");
  EXPECT_EQ(quiet.str(), "");
  std::ostringstream cut;
  {
    Progress live(Progress::Mode::kTerminal, &cut);
    live.update("step 1/3", 1, 3);
  }  // a run that stopped early still ends its line
  EXPECT_EQ(cut.str(), "\rstep 1/3\n");
}

TEST(IlfSampleProgress, StderrToAFileHasWholeLinesAndQuietHasNone) {
  const std::string dir = test::scratch_dir("ilf_sample_progress");
  const std::string args = "--config configs/fashion_mnist.json --batch 2 --no-enlarge --out " + dir + "/x.png";
  ASSERT_EQ(run_sample(args, dir + "/out.txt", dir + "/err.txt"), 0) << test::read_file(dir + "/err.txt");
  const std::string err = test::read_file(dir + "/err.txt");
  EXPECT_EQ(err.find('\r'), std::string::npos) << err;
  // 11 steps: one line for each (each crosses another tenth), each on its own line.
  EXPECT_NE(err.find("sampling: step 1/11\n"), std::string::npos) << err;
  EXPECT_NE(err.find("sampling: step 11/11\n"), std::string::npos) << err;
  EXPECT_EQ(err.find("11sampling"), std::string::npos) << err;
  ASSERT_EQ(run_sample(args + " --quiet", dir + "/out.txt", dir + "/err.txt"), 0) << test::read_file(dir + "/err.txt");
  EXPECT_EQ(test::read_file(dir + "/err.txt").find("sampling:"), std::string::npos) << test::read_file(dir + "/err.txt");
  EXPECT_EQ(test::read_file(dir + "/err.txt").find('\r'), std::string::npos);
}

TEST(IlfSampleProgress, IlfEvalProgressInAFileHasNoCarriageReturns) {
  const std::string dir = test::scratch_dir("ilf_eval_progress");
  const std::string command = "cd " + std::string(ILF_SOURCE_DIR) + " && " + std::string(ILF_BINARY_DIR) +
                              "/ilf_eval --config configs/fashion_mnist.json --set sampling.method=baseline --set "
                              "sampling.steps=2 --num-samples 20 --batch 10 "
                              "--out " +
                              dir + "/eval.json > " + dir + "/out.txt 2> " + dir + "/err.txt";
  ASSERT_EQ(std::system(command.c_str()), 0) << test::read_file(dir + "/err.txt");
  const std::string err = test::read_file(dir + "/err.txt");
  EXPECT_EQ(err.find('\r'), std::string::npos) << err;
  EXPECT_NE(err.find("ilf_eval: 10/20 samples\n"), std::string::npos) << err;
  EXPECT_NE(err.find("ilf_eval: 20/20 samples\n"), std::string::npos) << err;
}

// ---- Round 2 hardening -----------------------------------------------------------------------

TEST(HardeningOutput, IlfSampleRemovesTheTemporaryFilesAKilledRunLeftInItsFolder) {
  // Killed mid-write, ilf_sample (and ilf_eval, ilf_forward, ilf_search) left *.tmp.<pid> files that no
  // later run removed; every atomic writer now cleans its folder of those whose process is gone.
  const std::string dir = test::scratch_dir("hardening_sample_stale_tmp");
  std::ofstream(dir + "/x.png.tmp.999999999") << "partial";
  std::ofstream(dir + "/y.png.tmp.1") << "pid 1 is alive";
  ASSERT_EQ(run_sample("--config configs/fashion_mnist.json --method baseline --batch 1 --steps 2 --no-enlarge --quiet --out " +
                           dir + "/x.png",
                       dir + "/out.txt", dir + "/err.txt"),
            0)
      << test::read_file(dir + "/err.txt");
  EXPECT_TRUE(std::filesystem::exists(dir + "/x.png"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.png.tmp.999999999"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/y.png.tmp.1"));
}

TEST(HardeningConsistency, ToolsThatSampleOrEvaluateDefaultToDeviceAutoAsTheTrainerDoes) {
  EXPECT_EQ(SampleFilesRequest{}.device, "auto");
  EXPECT_EQ(EvalRequest{}.device, "auto");
  EXPECT_EQ(CalibrationRequest{}.device, "auto");
  EXPECT_EQ(ForwardDumpRequest{}.device, "auto");
  EXPECT_EQ(SearchRun{}.device, "auto");
  EXPECT_EQ(DataPreparationOptions{}.device, "auto");
  EXPECT_EQ(TrainingOptions{}.device, "auto");
  const torch::Device expected = torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  EXPECT_EQ(resolve_device("auto"), expected);
  EXPECT_EQ(resolve_device("cpu"), torch::Device(torch::kCPU));
  EXPECT_NE(test::error_of([] { resolve_device("gpu", "--device"); }).find("--device"), std::string::npos);
  // The trainer resolves its "auto" the same way.
  TrainingOptions training;
  EXPECT_EQ(training_device(training, 0), expected);
}

TEST(HardeningInputs, AClassBeyondTheExtractorsClassesIsRefusedNamingFileAndLineBeforeSampling) {
  // A labelled prompt of class 12 with a 10-class extractor was accepted and scored 0 % accuracy.
  const std::string dir = test::scratch_dir("hardening_eval_class_range");
  std::ofstream(dir + "/prompts.txt") << "3\ta dress\n12\ta shoe\n";
  const std::string command = "cd " + std::string(ILF_SOURCE_DIR) + " && " + std::string(ILF_BINARY_DIR) +
                              "/ilf_eval --config configs/fashion_mnist_t2i.json --model-folder models/fashion_mnist_t2i "
                              "--prompts-file " +
                              dir + "/prompts.txt --num-samples 2 --batch 2 --set sampling.steps=2 --out " + dir +
                              "/eval.json > " + dir + "/log.txt 2>&1";
  const int status = std::system(command.c_str());
  const std::string log = test::read_file(dir + "/log.txt");
  EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 1) << log;
  EXPECT_NE(log.find(dir + "/prompts.txt: line 2"), std::string::npos) << log;
  EXPECT_NE(log.find("class 12"), std::string::npos) << log;
  EXPECT_EQ(log.find("2/2 samples"), std::string::npos) << log;
  EXPECT_FALSE(std::filesystem::exists(dir + "/eval.json"));
}

// The checks at the end of every evaluation (ilf_eval, ilf_search, the sweeps). End to end they are no
// longer reached: weights, the VAE and every sampling step refuse non-finite values first, so the
// values are handed to them.
TEST(HardeningNonFinite, EvaluationSamplesAndMetricsThatAreNotFiniteAreRefusedBeforeAnythingIsWritten) {
  const std::string dir = test::scratch_dir("hardening_nonfinite_eval");
  const std::string written = dir + "/samples.safetensors";
  torch::Tensor samples = torch::zeros({4, 1, 8, 8});
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
    samples[2][0][3][5] = bad;
    for (const std::string& path : {written, std::string()}) {  // also when no samples are written: none is scored
      const std::string message =
          test::error_of([&] { check_and_write_evaluation_samples(samples, path, "configs/fashion_mnist.json"); });
      EXPECT_NE(message.find("evaluation: the generated samples: holds 1 NaN or Inf value of 256"), std::string::npos) << message;
    }
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir));  // no partial file or temporary either
  samples[2][0][3][5] = 0.5f;
  check_and_write_evaluation_samples(samples, written, "configs/fashion_mnist.json");
  EXPECT_TRUE(torch::equal(read_safetensors(written).tensors.at("samples"), samples));

  // Metrics: a NaN or Inf would be written as null at exit 0; a PSNR of +inf (identical images) stays.
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const nlohmann::json finite = {{"fid", 12.5}, {"class_accuracy", 0.75}, {"psnr_vs_reference", inf}, {"mse_vs_reference", 0.0}};
  EXPECT_EQ(test::error_of([&] { check_evaluation_metrics(finite); }), "");
  for (const auto& bad : std::vector<std::pair<std::string, double>>{
           {"fid", nan}, {"fid", inf}, {"class_accuracy", nan}, {"mse_vs_reference", inf}, {"psnr_vs_reference", nan}}) {
    nlohmann::json metrics = finite;
    metrics[bad.first] = bad.second;
    const std::string message = test::error_of([&] { check_evaluation_metrics(metrics); });
    EXPECT_NE(message.find("evaluation: the metric \"" + bad.first + "\" is not finite"), std::string::npos)
        << bad.first << " " << bad.second << ": " << message;
  }
}

}  // namespace
}  // namespace ilf
