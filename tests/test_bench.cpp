// Tests of the benchmark library behind ilf_bench: method names, bad input, the block forwards the
// rows report against the sampler's plan, the ratios and the table, and the forward dump that
// scripts/bench_pytorch_reference.py checks against. Tiny random models on the CPU.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "ilf/experiments/bench/bench.h"
#include "ilf/experiments/bench/cuda_support.h"
#include "ilf/error.h"
#include "ilf/io/safetensors.h"
#include "test_helpers.h"

namespace ilf {
namespace {

BenchSettings quick_settings(const std::vector<std::string>& methods) {
  BenchSettings s;
  for (const auto& m : methods) s.methods.push_back(parse_bench_method(m));
  s.batch = 2;
  s.warmup = 0;
  s.repeats = 1;
  return s;
}

TEST(Bench, MethodNamesParseIntoMethodAndSteps) {
  const BenchMethod ilf = parse_bench_method("ilf-10");
  EXPECT_EQ(ilf.method, "ilf");
  EXPECT_EQ(ilf.steps, 10);
  EXPECT_EQ(ilf.label(), "ilf-10");
  EXPECT_EQ(parse_bench_method("cache-20").method, "cache");
  EXPECT_EQ(parse_bench_method("baseline-12").steps, 12);
  for (const auto& name : default_bench_methods()) EXPECT_EQ(parse_bench_method(name).label(), name);
}

TEST(Bench, BadMethodsPresetsAndStepsAreClearErrors) {
  EXPECT_THROW(parse_bench_method("fast-10"), Error);
  EXPECT_THROW(parse_bench_method("ilf"), Error);
  EXPECT_THROW(parse_bench_method("ilf-x"), Error);
  try {
    parse_bench_method("ilf-0");
    FAIL() << "steps 0 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(">= 1"), std::string::npos) << e.what();
  }
  try {
    make_preset_model("dit-xxl", torch::kCPU, torch::kFloat32);
    FAIL() << "unknown preset accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dit-xl-2-256"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_preset_model("dit-tiny", torch::kCPU, torch::kBFloat16), Error);  // bf16 needs CUDA
}

TEST(Bench, OddBatchWithGuidanceAndGraphsOnTheCpuAreRefused) {
  BenchModel model = make_preset_model("dit-tiny", torch::kCPU, torch::kFloat32);
  BenchSettings settings = quick_settings({"baseline-2"});
  settings.batch = 3;
  EXPECT_THROW(benchmark_model(model, settings), Error);
  settings.batch = 2;
  settings.cuda_graph = true;
  EXPECT_THROW(benchmark_model(model, settings), Error);
  if (!cuda_support_compiled()) {
    CudaGraphRecorder recorder;
    EXPECT_THROW(recorder.capture([](const std::function<void()>&) {}), Error);
  }
}

TEST(Bench, RowsCountTheBlockForwardsOfTheSamplersPlan) {
  BenchModel model = make_preset_model("dit-tiny", torch::kCPU, torch::kFloat32);
  const std::vector<std::string> methods = {"baseline-20", "baseline-12", "cache-20", "ilf-10", "ilf-12"};
  BenchResult result = benchmark_model(model, quick_settings(methods));
  ASSERT_EQ(result.rows.size(), methods.size());
  const int64_t depth = model.backbone->depth();
  for (size_t i = 0; i < methods.size(); ++i) {
    const BenchRow& row = result.rows[i];
    EXPECT_EQ(row.method, methods[i]);
    SolverPtr solver = make_solver(model.config.sampling.solver);
    const BenchMethod method = parse_bench_method(methods[i]);
    const SamplingPlan plan = plan_sampling(*make_bench_method(model, method), *solver, method.steps, depth);
    EXPECT_EQ(row.block_forwards, plan.total_block_forwards) << methods[i];
    EXPECT_EQ(row.planned_block_forwards, plan.total_block_forwards) << methods[i];
    EXPECT_EQ(row.batch, 2);
    EXPECT_EQ(row.images, 1);  // guidance: [conditional; null]
    EXPECT_GT(row.ms_per_forward, 0);
    EXPECT_GT(row.seconds_per_image, 0);
    EXPECT_LT(row.seconds_per_image_with_vae, 0);  // no VAE
  }
  EXPECT_EQ(result.rows[0].block_forwards, 20 * depth);  // the plain sampler runs every block once per step
  EXPECT_EQ(result.rows[1].block_forwards, 12 * depth);
  EXPECT_LT(result.rows[2].block_forwards, 20 * depth);  // caching skips blocks
  EXPECT_GT(result.rows[3].block_forwards, 10 * depth);  // ILF adds the loop and F on feedback steps
  EXPECT_LT(result.graph_error, 0);                      // no graphs here

  fill_ratios(result.rows);
  const BenchRow& base = result.rows[0];
  EXPECT_DOUBLE_EQ(base.speedup, 1.0);
  EXPECT_DOUBLE_EQ(base.block_forward_ratio, 1.0);
  for (const BenchRow& row : result.rows) {
    EXPECT_DOUBLE_EQ(row.block_forward_ratio, static_cast<double>(base.block_forwards) / row.block_forwards);
    EXPECT_DOUBLE_EQ(row.speedup, base.seconds_per_image / row.seconds_per_image);
    EXPECT_DOUBLE_EQ(row.efficiency, row.speedup / row.block_forward_ratio);
  }
  const std::string table = format_bench_table(result.rows);
  EXPECT_NE(table.find("| speedup / ratio |"), std::string::npos);
  for (const auto& m : methods) EXPECT_NE(table.find("| " + m + " |"), std::string::npos) << table;
  const nlohmann::json json = bench_rows_to_json(result.rows);
  ASSERT_EQ(json.size(), methods.size());
  EXPECT_EQ(json[3]["block_forwards"].get<int64_t>(), result.rows[3].block_forwards);
  EXPECT_TRUE(json[0]["seconds_per_image_with_vae"].is_null());
}

TEST(Bench, RowsWithoutABaseline20KeepRatiosEmpty) {
  BenchModel model = make_preset_model("pixart-tiny-ms", torch::kCPU, torch::kFloat32);
  BenchResult result = benchmark_model(model, quick_settings({"baseline-2", "ilf-2", "cache-3"}));
  fill_ratios(result.rows);
  for (const BenchRow& row : result.rows) EXPECT_EQ(row.speedup, 0) << row.method;
  EXPECT_NE(format_bench_table(result.rows).find("| - |"), std::string::npos);
}

TEST(Bench, ForwardDumpHoldsWeightsInputsAndTheForwardOfThoseInputs) {
  BenchModel model = make_preset_model("pixart-tiny", torch::kCPU, torch::kFloat32);
  const std::string path = test::scratch_dir("bench_dump") + "/pixart.safetensors";
  write_forward_dump(model, 1, 0, path);
  const SafetensorsFile file = read_safetensors(path);
  const nlohmann::json arch = nlohmann::json::parse(file.metadata.at("architecture"));
  EXPECT_EQ(arch["family"], "pixart");
  EXPECT_EQ(arch["depth"].get<int64_t>(), model.backbone->depth());
  for (const auto& p : model.backbone->named_parameters(true)) EXPECT_TRUE(file.tensors.count("weight." + p.key())) << p.key();
  const TensorMap& t = file.tensors;
  ConditionInputs inputs;
  inputs.caption = require_tensor(t, "input.caption", path);
  inputs.caption_mask = require_tensor(t, "input.caption_mask", path);
  const torch::Tensor x = require_tensor(t, "input.x", path);
  EXPECT_EQ(x.size(0), 2);  // one image with guidance
  torch::NoGradGuard no_grad;
  const torch::Tensor again = model.backbone->forward(x, require_tensor(t, "input.t", path), inputs);
  EXPECT_EQ(test::relative_error(again, require_tensor(t, "output", path)), 0.0);
}

TEST(Bench, MedianOfRepeatsIsTheMiddleValue) {
  EXPECT_DOUBLE_EQ(median({3.0, 1.0, 2.0}), 2.0);
  EXPECT_DOUBLE_EQ(median({4.0, 1.0, 2.0, 3.0}), 2.5);
  EXPECT_THROW(median({}), Error);
  int calls = 0;
  median_milliseconds([&] { ++calls; }, torch::kCPU, 2, 3);
  EXPECT_EQ(calls, 5);
}

}  // namespace
}  // namespace ilf
