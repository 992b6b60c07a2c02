// The acceleration methods against the plain sampler and their own plans: for every method the block
// forwards counted while sampling equal the plan step by step, each method's defining property holds
// (the settings that reuse nothing reproduce the plain sampler bit for bit; a TaylorSeer forecast of a
// linear feature is exact; TeaCache computes the first and last steps), on DiT and PixArt, and bad
// settings are refused naming their key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "ilf/accel/delta_dit.h"
#include "ilf/accel/l2c.h"
#include "ilf/accel/taylorseer.h"
#include "ilf/accel/teacache.h"
#include "ilf/config/run_config.h"
#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/safetensors.h"
#include "ilf/pipelines/calibration.h"
#include "ilf/feedback/feedback.h"
#include "ilf/models/dit.h"
#include "ilf/models/pixart.h"
#include "ilf/sampling/dpm_solver.h"
#include "ilf/sampling/sampler.h"
#include "ilf/training/l2c_router.h"
#include "test_helpers.h"

using namespace ilf;
using test::error_of;

namespace {

BackbonePtr tiny_backbone(const std::string& family) {
  torch::manual_seed(11);
  BackbonePtr model;
  if (family == "dit") {
    DiTConfig c;
    c.input_size = 8, c.patch_size = 2, c.in_channels = 4, c.hidden_size = 32, c.depth = 6, c.num_heads = 4, c.num_classes = 10;
    model = std::make_shared<DiTImpl>(c);
  } else {
    PixArtConfig c;
    c.input_size = 8, c.patch_size = 2, c.in_channels = 4, c.hidden_size = 32, c.depth = 6, c.num_heads = 4;
    c.caption_channels = 16, c.model_max_length = 5, c.pred_sigma = false;
    model = std::make_shared<PixArtImpl>(c);
  }
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.normal_(0, 0.2);  // no zero-initialised gates
  model->eval();
  return model;
}

ConditionInputs inputs_for(const Backbone& model) {
  ConditionInputs in;
  if (model.condition_kind() == ConditionKind::kClassLabel) {
    in.class_labels = torch::tensor({2, 7}, torch::kInt64);
  } else {
    auto gen = at::detail::createCPUGenerator(5);
    in.caption = torch::randn({2, 5, 16}, gen);
    in.caption_mask = torch::tensor({{1, 1, 1, 0, 0}, {1, 1, 1, 1, 1}}, torch::kInt64);
  }
  return in;
}

// A run config with `json` (the method's sections) parsed as the tools parse it.
RunConfig config_of(const std::string& method, Json json) {
  json["sampling"]["method"] = method;
  return parse_run_config(json, "test.json");
}

SamplingResult run(Backbone& model, const RunConfig& config, int64_t steps, FeedbackModuleImpl* feedback = nullptr) {
  DPMSolverMultistep solver;
  auto gen = at::detail::createCPUGenerator(3);
  const torch::Tensor x_T = torch::randn({2, 4, 8, 8}, gen);
  const ConditionInputs in = inputs_for(model);
  ConditionInputs null = in;
  if (model.condition_kind() == ConditionKind::kClassLabel)
    null = model.null_condition(in);
  else
    null.caption = torch::zeros_like(in.caption);
  SamplingOptions o;
  o.steps = steps;
  o.guidance_scale = 2.5;
  const AccelerationMethodPtr method = make_acceleration_method(config, feedback);
  return sample(model, *method, solver, o, x_T, in, null);
}

void expect_counts_match_plan(const SamplingResult& r, const std::string& what) {
  int64_t total = 0;
  for (const StepPlan& s : r.plan.steps) {
    EXPECT_EQ(s.block_forwards_run, s.action.block_forwards) << what << ", step " << s.index;
    total += s.block_forwards_run;
  }
  EXPECT_EQ(total, r.block_forwards) << what;
  EXPECT_EQ(r.plan.total_block_forwards, r.block_forwards) << what;
}

const std::vector<std::string> kFamilies = {"dit", "pixart"};

}  // namespace

TEST(Accel, EveryMethodsCountedBlockForwardsEqualItsPlanOnBothBackbones) {
  const std::vector<std::pair<std::string, Json>> cases = {
      {"fora", {{"fora", {{"interval", 3}}}}},
      {"delta_dit", {{"delta_dit", {{"num_blocks", 2}, {"boundary", 0.5}, {"interval", 2}}}}},
      {"teacache", {{"teacache", {{"threshold", 1.5}}}}},
      {"taylorseer", {{"taylorseer", {{"interval", 3}, {"order", 2}}}}},
      {"cache", {{"cache", {{"num_blocks", 2}, {"interval", 2}}}}},
  };
  for (const auto& family : kFamilies) {
    BackbonePtr model = tiny_backbone(family);
    for (const auto& [method, json] : cases) {
      const SamplingResult r = run(*model, config_of(method, json), 8);
      expect_counts_match_plan(r, family + " " + method);
      EXPECT_LT(r.block_forwards, 8 * 6) << family + " " + method << " saves nothing";
      EXPECT_TRUE(torch::isfinite(r.samples).all().item<bool>()) << family + " " + method;
    }
  }
}

TEST(Accel, SettingsThatReuseNothingReproduceThePlainSamplerBitForBit) {
  const std::vector<std::pair<std::string, Json>> cases = {
      {"fora", {{"fora", {{"interval", 1}}}}},
      {"delta_dit", {{"delta_dit", {{"num_blocks", 0}}}}},
      {"delta_dit", {{"delta_dit", {{"num_blocks", 3}, {"interval", 1}}}}},
      {"teacache", {{"teacache", {{"threshold", 0.0}}}}},
      {"taylorseer", {{"taylorseer", {{"interval", 1}, {"order", 2}}}}},
  };
  for (const auto& family : kFamilies) {
    BackbonePtr model = tiny_backbone(family);
    const SamplingResult plain = run(*model, config_of("baseline", Json::object()), 6);
    for (const auto& [method, json] : cases) {
      const SamplingResult r = run(*model, config_of(method, json), 6);
      EXPECT_TRUE(torch::equal(r.samples, plain.samples)) << family << " " << method << " " << json.dump();
      EXPECT_EQ(r.block_forwards, plain.block_forwards) << family << " " << method;
    }
  }
}

TEST(Accel, PlansShowWhatEachMethodReuses) {
  DPMSolverMultistep solver;
  auto plan = [&](const std::string& method, const Json& json, int64_t steps) {
    return plan_sampling(*make_acceleration_method(config_of(method, json)), solver, steps, 28);
  };
  // FORA: all 28 blocks every 3rd step, none between.
  const SamplingPlan fora = plan("fora", {{"fora", {{"interval", 3}}}}, 20);
  EXPECT_EQ(fora.total_block_forwards, 7 * 28);
  // Delta-DiT: rear 10 blocks reused before step 10, front 10 after, on odd steps.
  const SamplingPlan delta = plan("delta_dit", {{"delta_dit", {{"num_blocks", 10}, {"boundary", 0.5}, {"interval", 2}}}}, 20);
  EXPECT_EQ(delta.steps[1].action.reused_blocks.front(), 18);
  EXPECT_EQ(delta.steps[11].action.reused_blocks.back(), 9);
  EXPECT_EQ(delta.total_block_forwards, 20 * 28 - 10 * 10);
  // TeaCache: the first and the last step always compute; the others are decided while sampling.
  const SamplingPlan tea = plan("teacache", {{"teacache", {{"threshold", 0.2}}}}, 10);
  EXPECT_FALSE(tea.steps.front().action.decided_at_run_time);
  EXPECT_FALSE(tea.steps.back().action.decided_at_run_time);
  EXPECT_TRUE(tea.steps[4].action.decided_at_run_time);
}

TEST(Accel, TeaCacheComputesTheFirstAndLastStepsAndSkipsWithALargeThreshold) {
  BackbonePtr model = tiny_backbone("dit");
  const SamplingResult r = run(*model, config_of("teacache", {{"teacache", {{"threshold", 1e9}}}}), 7);
  EXPECT_EQ(r.plan.steps.front().block_forwards_run, 6);
  EXPECT_EQ(r.plan.steps.back().block_forwards_run, 6);
  for (size_t k = 1; k + 1 < r.plan.steps.size(); ++k) EXPECT_EQ(r.plan.steps[k].block_forwards_run, 0) << k;
}

TEST(Accel, TaylorForecastOfALinearFeatureIsExact) {
  // f(k) = a + b k, full steps every 3: the first-order forecast between them is exact.
  const torch::Tensor a = torch::tensor({0.5f, -1.25f, 3.0f}), b = torch::tensor({0.25f, 2.0f, -0.75f});
  TaylorForecaster first(1), second(2);
  for (int64_t k : {0, 3, 6}) {
    first.update(k, a + b * static_cast<float>(k));
    second.update(k, a + b * static_cast<float>(k));
  }
  for (int64_t k : {7, 8, 9}) {
    EXPECT_TRUE(torch::equal(first.predict(k), a + b * static_cast<float>(k))) << k;
    EXPECT_TRUE(torch::allclose(second.predict(k), a + b * static_cast<float>(k), 0, 1e-6)) << k;  // f'' = 0
  }
  // Order 0 until a second value exists: the last value itself.
  TaylorForecaster fresh(2);
  fresh.update(4, a);
  EXPECT_TRUE(torch::equal(fresh.predict(6), a));
}

TEST(Accel, TeaCachePolynomialFitRecoversAKnownPolynomial) {
  std::vector<double> x, y;
  for (int i = 0; i < 40; ++i) {
    const double d = 0.01 + 0.02 * i;
    x.push_back(d);
    y.push_back(3.0 * d * d * d - 2.0 * d * d + 0.5 * d + 0.125);
  }
  const std::vector<double> c = fit_polynomial(x, y, 3);
  const std::vector<double> expected = {3.0, -2.0, 0.5, 0.125};
  for (size_t i = 0; i < c.size(); ++i) EXPECT_NEAR(c[i], expected[i], 1e-8) << i;
  EXPECT_DOUBLE_EQ(evaluate_polynomial({2.0, 1.0}, 3.0), 7.0);
  EXPECT_DOUBLE_EQ(evaluate_polynomial({}, 0.3), 0.3);
}

TEST(Accel, BadSettingsAreRefusedNamingTheKey) {
  for (const auto& [assignment, key] : std::vector<std::pair<std::string, std::string>>{
           {"fora.interval=0", "fora.interval"},
           {"delta_dit.boundary=1.5", "delta_dit.boundary"},
           {"delta_dit.num_blocks=-1", "delta_dit.num_blocks"},
           {"taylorseer.order=3", "taylorseer.order"},
           {"teacache.threshold=-1", "teacache.threshold"},
           {"teacache.calibration=/nonexistent/teacache.json", "teacache.calibration"},
           {"ilf_cache.mode=both", "ilf_cache.mode"},
           {"sampling.method=fast", "sampling.method"},
           {"fora.intervall=2", "fora.intervall"}}) {
    Json json = Json::object();
    apply_override(json, assignment);
    const std::string message = error_of([&] { parse_run_config(json, "run.json"); });
    EXPECT_NE(message.find(key), std::string::npos) << assignment << ": " << message;
  }
  // Delta-DiT's range must fit the backbone.
  DPMSolverMultistep solver;
  const RunConfig big = config_of("delta_dit", {{"delta_dit", {{"num_blocks", 30}}}});
  EXPECT_NE(error_of([&] { plan_sampling(*make_acceleration_method(big), solver, 10, 28); }).find("delta_dit.num_blocks"),
            std::string::npos);
}

TEST(Accel, IlfWithCachingCountsItsPlanAndWithoutReuseOrFeedbackEqualsThePlainSampler) {
  for (const auto& family : kFamilies) {
    BackbonePtr model = tiny_backbone(family);
    FeedbackModule untrained(*model, FeedbackOptions{2, 3, FeedbackInit::kCopyLoopEnd});  // zero scales
    const Json loop = {
        {"loop_begin", 2}, {"loop_end", 3}, {"t_post", "none"}, {"feedback_steps", {{"mode", "outer"}, {"count", 2}}}};
    // Zero scales, t_post = t and a cache that recomputes every step: the plain sampler exactly.
    const SamplingResult plain = run(*model, config_of("baseline", Json::object()), 7);
    const SamplingResult same =
        run(*model, config_of("ilf_cache", {{"ilf", loop}, {"cache", {{"num_blocks", 2}, {"interval", 1}}}}), 7, untrained.get());
    EXPECT_TRUE(torch::equal(same.samples, plain.samples)) << family;
    // Alternate: feedback on steps 0, 1, 5, 6; the 3 steps between cached every other one.
    const SamplingResult alternate =
        run(*model, config_of("ilf_cache", {{"ilf", loop}, {"cache", {{"num_blocks", 2}, {"interval", 2}}}}), 7, untrained.get());
    expect_counts_match_plan(alternate, family + " alternate");
    EXPECT_EQ(alternate.block_forwards, 4 * (6 + 2 + 1) + 2 * 6 + (6 - 2));
    // Outside: feedback steps after the first step without feedback reuse the 4 blocks outside the loop.
    const SamplingResult outside =
        run(*model, config_of("ilf_cache", {{"ilf", loop}, {"ilf_cache", {{"mode", "outside"}}}}), 7, untrained.get());
    expect_counts_match_plan(outside, family + " outside");
    EXPECT_EQ(outside.block_forwards, 2 * (6 + 2 + 1) + 3 * 6 + 2 * (2 * 2 + 1));
  }
}

TEST(Accel, TeaCacheCalibrationFitsTheRecordedChangesAndItsFileIsAccepted) {
  const LoadedRunConfig loaded =
      load_tool_config(std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json", {"sampling.steps=8"});
  CalibrationRequest request;
  request.num_samples = 6;
  request.batch = 3;
  request.degree = 2;
  const TeaCacheCalibration c = calibrate_teacache(loaded, request);
  ASSERT_EQ(c.input_changes.size(), 2u * 7u);  // two sampling runs, one pair per step after the first
  ASSERT_EQ(c.coefficients.size(), 3u);
  // Least squares over polynomials that include p(d) = d fits at least as well as the identity.
  double identity = 0;
  for (size_t i = 0; i < c.input_changes.size(); ++i) identity += std::pow(c.input_changes[i] - c.output_changes[i], 2);
  EXPECT_LE(c.rms_error, std::sqrt(identity / c.input_changes.size()) + 1e-12);

  const std::string file = testing::TempDir() + "/teacache.json";
  write_file_atomically(file, [&](std::ostream& o) { o << c.file.dump(); });
  RunConfig config = load_tool_config(std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json",
                                      {"sampling.method=teacache", "teacache.calibration=" + file})
                         .config;
  EXPECT_EQ(settings_as<TeaCacheSettings>(*config.methods.at("teacache"), "teacache").coefficients, c.coefficients);
}

namespace {

// A router file for `steps` steps of 6 blocks with a full step every `full_every`, with the given
// logits of its cache steps (row-major), as ilf_train writes it.
std::string write_router(const std::vector<float>& logits, int64_t steps, int64_t full_every, const std::string& name) {
  const std::string path = testing::TempDir() + "/" + name + ".safetensors";
  const auto rows = static_cast<int64_t>(logits.size()) / 6;
  write_l2c_router(path, torch::tensor(logits).reshape({rows, 6}), steps, full_every, {});
  return path;
}

// Logits for every cache step of `steps` steps (6 blocks), spread over [-5, 5] in a fixed pattern.
std::vector<float> spread_logits(int64_t steps, int64_t full_every) {
  std::vector<float> logits(l2c_cache_steps(steps, full_every).size() * 6);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>((i * 7) % 11) - 5.0f;
  return logits;
}

// Class labels and nothing else: what the router training reads from a data set.
class LabelsOnly : public Dataset {
 public:
  int64_t size() const override { return 100; }
  std::vector<int64_t> sample_shape() const override { return {4, 8, 8}; }
  std::string describe() const override { return "labels"; }
  TrainingBatch load(const std::vector<int64_t>& indices) override {
    TrainingBatch b;
    b.x0 = torch::zeros({static_cast<int64_t>(indices.size()), 4, 8, 8});
    b.condition.class_labels = torch::tensor(indices, torch::kInt64).remainder(10);
    return b;
  }
};

}  // namespace

TEST(Accel, L2CSchedulesReuseOnlyOnCacheStepsByThresholdOrBudget) {
  // 5 steps, a full step every 2: cache steps 1 and 3 (rows 0 and 1 of the logits), 2 blocks.
  const torch::Tensor logits = torch::tensor({-3.0f, 1.0f, -3.0f, -3.0f}).reshape({2, 2});
  using Schedule = std::vector<std::vector<bool>>;
  // Threshold 0.1: sigmoid(-3) = 0.047 is reused, sigmoid(1) = 0.73 computes; full steps compute.
  const Schedule by_threshold = {{false, false}, {true, false}, {false, false}, {true, true}, {false, false}};
  EXPECT_EQ(l2c_threshold_schedule(logits, 5, 2, 0.1), by_threshold);
  // Threshold 0 reuses nothing.
  for (const auto& row : l2c_threshold_schedule(logits, 5, 2, 0.0)) EXPECT_EQ(row, std::vector<bool>(2, false));
  // Budget 0.8 of 10: two reuses among the three tied -3 logits: the later step's go first.
  const Schedule by_budget = {{false, false}, {false, false}, {false, false}, {true, true}, {false, false}};
  EXPECT_EQ(l2c_budget_schedule(logits, 5, 2, 0.8), by_budget);
  // Budget 1 reuses nothing; 0.6 reuses every cache step's block; 0.5 is below what alternation reaches.
  for (const auto& row : l2c_budget_schedule(logits, 5, 2, 1.0)) EXPECT_EQ(row, std::vector<bool>(2, false));
  const Schedule all = {{false, false}, {true, true}, {false, false}, {true, true}, {false, false}};
  EXPECT_EQ(l2c_budget_schedule(logits, 5, 2, 0.6), all);
  EXPECT_NE(error_of([&] { l2c_budget_schedule(logits, 5, 2, 0.5); }).find("at least 0.6"), std::string::npos);
  // A full step every 3 of 6: cache steps 1, 2, 4, 5 follow each other in pairs; a block reused on one
  // computes on the next, so that every reuse is of the step before.
  const torch::Tensor cheap = torch::full({4, 2}, -9.0f);
  // The threshold rule decides in step order (the earlier step of a pair reuses); the budget rule in
  // its ranking, where ties go to the later step.
  const Schedule earlier = {{false, false}, {true, true}, {false, false}, {false, false}, {true, true}, {false, false}};
  EXPECT_EQ(l2c_threshold_schedule(cheap, 6, 3, 0.1), earlier);
  const Schedule later = {{false, false}, {false, false}, {true, true}, {false, false}, {false, false}, {true, true}};
  EXPECT_EQ(l2c_budget_schedule(cheap, 6, 3, 8.0 / 12.0), later);
  EXPECT_NE(error_of([&] { l2c_budget_schedule(cheap, 6, 3, 0.6); }).find("at least 0.66"), std::string::npos);
  // Every row must belong to a cache step.
  EXPECT_NE(error_of([&] { l2c_threshold_schedule(cheap, 5, 2, 0.1); }).find("cache steps"), std::string::npos);
}

TEST(Accel, L2CWithARouterThatReusesNothingIsThePlainSamplerAndItsCountsMatchThePlan) {
  const std::string router = write_router(spread_logits(8, 2), 8, 2, "router8");
  for (const auto& family : kFamilies) {
    BackbonePtr model = tiny_backbone(family);
    const SamplingResult plain = run(*model, config_of("baseline", Json::object()), 8);
    const SamplingResult same = run(*model, config_of("l2c", {{"l2c", {{"router", router}, {"budget", 1.0}}}}), 8);
    EXPECT_TRUE(torch::equal(same.samples, plain.samples)) << family;
    const SamplingResult part = run(*model, config_of("l2c", {{"l2c", {{"router", router}, {"budget", 0.75}}}}), 8);
    expect_counts_match_plan(part, family + " l2c");
    EXPECT_EQ(part.block_forwards, 36) << family;  // round(0.75 x 8 x 6)
  }
  // A router trained for 8 steps refuses 10, naming the key.
  DPMSolverMultistep solver;
  const RunConfig wrong = config_of("l2c", {{"l2c", {{"router", router}}}});
  EXPECT_NE(error_of([&] { plan_sampling(*make_acceleration_method(wrong), solver, 10, 6); }).find("l2c.router"),
            std::string::npos);
}

TEST(Accel, L2CTrainingLowersTheGatesOfABlockWhoseReuseCostsNothing) {
  BackbonePtr model = tiny_backbone("dit");
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->block_module(3)->parameters()) p.zero_();  // adaLN gates 0: block 3 is the identity
  }
  DPMSolverMultistep solver;
  LabelsOnly data;
  SamplingOptions sampling;
  sampling.steps = 5;
  sampling.guidance_scale = 2.0;
  L2CRouterOptions o;
  o.iterations = 30;
  o.batch = 4;
  o.trajectories = 4;
  o.lr = 0.1;
  o.sparsity = 1e-4;
  const torch::Tensor theta = train_l2c_router(*model, solver, sampling, data, o, torch::kCPU);
  ASSERT_EQ(theta.sizes(), (std::vector<int64_t>{2, 6}));  // cache steps 1 and 3
  const double identity_block = theta.select(1, 3).mean().item<double>();
  for (int64_t j : {0, 1, 2, 4, 5}) EXPECT_LT(identity_block, theta.select(1, j).mean().item<double>()) << "block " << j;
  EXPECT_LE(theta.abs().max().item<double>(), 5.0);
}
