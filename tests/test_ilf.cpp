// Inner Loop Feedback at inference: the inner-loop forward, the feedback module's file format, the
// t_post rules, feedback step selection, caching, plans and block-forward accounting.
#include <gtest/gtest.h>

#include "ilf/accel/baseline.h"
#include "ilf/accel/cache.h"
#include "ilf/accel/ilf.h"
#include "ilf/accel/registry.h"
#include "ilf/error.h"
#include "ilf/feedback/feedback.h"
#include "ilf/feedback/inner_loop.h"
#include "ilf/feedback/schedule.h"
#include "ilf/models/dit.h"
#include "ilf/models/pixart.h"
#include "ilf/sampling/dpm_solver.h"
#include "ilf/sampling/sampler.h"
#include "test_helpers.h"

using namespace ilf;
using test::error_of;

namespace {

DiT tiny_dit(int64_t depth = 6) {
  torch::manual_seed(7);
  DiTConfig c;
  c.input_size = 8;
  c.patch_size = 2;
  c.in_channels = 4;
  c.hidden_size = 32;
  c.depth = depth;
  c.num_heads = 4;
  c.num_classes = 10;
  DiT model(c);
  // Official initialisation zeroes the adaLN and output layers; give every weight a non-trivial value.
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) p.value().normal_(0, 0.2);
  model->eval();
  return model;
}

ConditionInputs labels(std::vector<int64_t> ys) {
  ConditionInputs in;
  in.class_labels = torch::tensor(ys, torch::kInt64);
  return in;
}

// A PixArt-alpha of the DiT's size with a 16-wide, 5-token caption and every weight non-trivial.
PixArt tiny_pixart() {
  torch::manual_seed(9);
  PixArtConfig c;
  c.input_size = 8, c.patch_size = 2, c.in_channels = 4, c.hidden_size = 32, c.depth = 6, c.num_heads = 4;
  c.caption_channels = 16, c.model_max_length = 5;
  PixArt model(c);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) p.value().normal_(0, 0.2);
  model->eval();
  return model;
}

ConditionInputs captions() {
  ConditionInputs in;
  in.caption = torch::randn({2, 5, 16});
  in.caption_mask = torch::tensor({{1, 1, 1, 0, 0}, {1, 1, 1, 1, 1}}, torch::kInt64);
  return in;
}

// Paper Eq. 2-3 as docs/design.md, "The method" states it, written out over the backbone's stages with
// F, the scales s_b..s_e and the loop [b, e] given directly (nothing of the library's inner loop):
//   h = embed(x); B_0..B_e under cond(t), keeping h_{b-1} (the input of B_b); f = F(f_e, cond(t));
//   h = h_{b-1}; for j in b..e: h = B_j(h + s_j f, cond(t_post)); B_{e+1}..B_{N-1} and the head under cond(t_post).
torch::Tensor inner_loop_as_written(Backbone& model, TransformerBlock& F, const std::vector<double>& s, int64_t b, int64_t e,
                                    const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& t_post,
                                    const ConditionInputs& in) {
  torch::Tensor h = model.embed(x);  // (B, T, D)
  const Conditioning cond_t = model.condition(t, in);
  torch::Tensor h_before_loop;  // h_{b-1}
  for (int64_t j = 0; j <= e; ++j) {
    if (j == b) h_before_loop = h;
    h = model.block(j, h, cond_t);
  }
  const torch::Tensor f = F.forward(h, cond_t);  // F(f_e), (B, T, D)
  const Conditioning cond_post = model.condition(t_post, in);
  h = h_before_loop;
  for (int64_t j = b; j <= e; ++j) h = model.block(j, h + s[static_cast<size_t>(j - b)] * f, cond_post);
  for (int64_t j = e + 1; j < model.depth(); ++j) h = model.block(j, h, cond_post);
  return model.head(h, cond_post, x.size(2), x.size(3));
}

// The inner-loop forward with feedback switched on (random F, non-zero scales, t_post != t) against
// inner_loop_as_written, and its block count N + m + 1.
void expect_active_inner_loop_as_written(Backbone& model, const ConditionInputs& in) {
  const int64_t b = 2, e = 4;
  FeedbackModule feedback(model, FeedbackOptions{b, e, FeedbackInit::kRandom});
  torch::NoGradGuard no_grad;
  for (auto& p : feedback->block->parameters()) p.normal_(0, 0.2);  // no zero-initialised gates in F
  const std::vector<double> s = {0.75, -0.5, 0.375};                // exact in float32
  feedback->scales.copy_(torch::tensor({0.75f, -0.5f, 0.375f}));
  const auto x = torch::randn({2, 4, 8, 8});
  const auto t = torch::tensor({700.0f, 300.0f}), t_post = torch::tensor({450.0f, 120.0f});

  BlockRunner runner(model);
  const auto ours = inner_loop_forward(runner, *feedback, x, t, t_post, in);
  const auto expected = inner_loop_as_written(model, *feedback->block, s, b, e, x, t, t_post, in);
  EXPECT_LE(test::relative_error(ours, expected), 1e-6) << model.family();
  EXPECT_EQ(runner.block_forwards(), model.depth() + (e - b + 1) + 1);  // N + m + 1
  // The feedback matters here: the plain forward under t is far from it.
  EXPECT_GT(test::relative_error(model.forward(x, t, in), expected), 1e-3) << model.family();
}

}  // namespace

TEST(InnerLoop, ZeroScalesWithTPostEqualToTReproduceTheBackbone) {
  DiT model = tiny_dit();
  FeedbackModule feedback(*model, FeedbackOptions{1, 3, FeedbackInit::kRandom});
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 4, 8, 8});
  const auto t = torch::tensor({900.0f, 35.0f});
  const auto in = labels({3, 10});
  BlockRunner runner(*model);
  const auto ours = inner_loop_forward(runner, *feedback, x, t, t, in);
  const auto plain = model->forward(x, t, in);
  EXPECT_TRUE(torch::equal(ours, plain)) << "max diff " << (ours - plain).abs().max().item<double>();
  EXPECT_EQ(runner.block_forwards(), 6 + 3 + 1);  // N + m + 1
}

TEST(InnerLoop, WithFeedbackFollowsThePaperEquationsOnDiT) {
  DiT model = tiny_dit();
  expect_active_inner_loop_as_written(*model, labels({3, 10}));
}

TEST(InnerLoop, WithFeedbackFollowsThePaperEquationsOnPixArt) {
  PixArt model = tiny_pixart();
  expect_active_inner_loop_as_written(*model, captions());
}

TEST(InnerLoop, NonZeroScalesOrAnotherTPostChangeTheOutput) {
  DiT model = tiny_dit();
  FeedbackModule feedback(*model, FeedbackOptions{2, 4, FeedbackInit::kCopyLoopEnd});
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 4, 8, 8});
  const auto t = torch::tensor({500.0f});
  const auto in = labels({1});
  const auto plain = model->forward(x, t, in);
  BlockRunner runner(*model);
  const auto later = inner_loop_forward(runner, *feedback, x, t, torch::tensor({400.0f}), in);
  EXPECT_GT((later - plain).abs().max().item<double>(), 1e-4);
  feedback->scales.fill_(0.5);
  const auto fed = inner_loop_forward(runner, *feedback, x, t, t, in);
  EXPECT_GT((fed - plain).abs().max().item<double>(), 1e-4);
}

TEST(InnerLoop, StrengthScalesTheFeedbackLikeScaledLearnedScales) {
  DiT model = tiny_dit();
  FeedbackModule feedback(*model, FeedbackOptions{2, 4, FeedbackInit::kCopyLoopEnd});
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 4, 8, 8});
  const auto t = torch::tensor({700.0f, 120.0f});
  const auto in = labels({4, 2});
  feedback->scales.fill_(0.6);
  BlockRunner runner(*model);
  const auto half_strength = inner_loop_forward(runner, *feedback, x, t, t, in, 0.5);
  const auto zero_strength = inner_loop_forward(runner, *feedback, x, t, t, in, 0.0);
  const auto full = inner_loop_forward(runner, *feedback, x, t, t, in);
  feedback->scales.fill_(0.3);  // 0.6 * 0.5: halving is exact in floating point, so the outputs are equal bit for bit
  const auto half_scales = inner_loop_forward(runner, *feedback, x, t, t, in);
  EXPECT_TRUE(torch::equal(half_strength, half_scales)) << (half_strength - half_scales).abs().max().item<double>();
  EXPECT_TRUE(torch::equal(zero_strength, model->forward(x, t, in)));  // no feedback: the backbone
  EXPECT_GT((full - half_scales).abs().max().item<double>(), 1e-4);
}

TEST(FeedbackModule, CopyInitialisationTakesTheWeightsOfBlockE) {
  DiT model = tiny_dit();
  FeedbackModule feedback(*model, FeedbackOptions{1, 4, FeedbackInit::kCopyLoopEnd});
  const auto source = model->block_module(4)->named_parameters();
  for (const auto& p : feedback->block->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), source[p.key()])) << p.key();
  EXPECT_TRUE(torch::equal(feedback->scales, torch::zeros({4})));
}

TEST(FeedbackModule, LoopOutsideTheDepthIsRejected) {
  DiT model = tiny_dit(6);
  EXPECT_NE(error_of([&] {
              FeedbackModule(*model, FeedbackOptions{2, 6, FeedbackInit::kRandom});
            }).find("depth 6"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              FeedbackModule(*model, FeedbackOptions{4, 2, FeedbackInit::kRandom});
            }).find("loop_begin"),
            std::string::npos);
  EXPECT_THROW(FeedbackModule(*model, FeedbackOptions{-1, 2, FeedbackInit::kRandom}), Error);
}

TEST(FeedbackModule, SaveLoadRoundTripAndRefusesAnotherBackboneOrLoop) {
  const std::string dir = test::scratch_dir("feedback_roundtrip");
  DiT model = tiny_dit(6);
  FeedbackModule a(*model, FeedbackOptions{1, 3, FeedbackInit::kRandom});
  {
    torch::NoGradGuard no_grad;
    a->scales.uniform_(-1, 1);
  }
  a->save(dir + "/fb.safetensors");
  FeedbackModule b(*model, FeedbackOptions{1, 3, FeedbackInit::kCopyLoopEnd});
  b->load(dir + "/fb.safetensors");
  const auto pa = a->named_parameters();
  for (const auto& p : b->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), pa[p.key()])) << p.key();

  FeedbackModule other_loop(*model, FeedbackOptions{2, 3, FeedbackInit::kRandom});
  EXPECT_NE(error_of([&] { other_loop->load(dir + "/fb.safetensors"); }).find("loop_begin"), std::string::npos);
  DiT deeper = tiny_dit(8);
  FeedbackModule other_depth(*deeper, FeedbackOptions{1, 3, FeedbackInit::kRandom});
  EXPECT_NE(error_of([&] { other_depth->load(dir + "/fb.safetensors"); }).find("depth"), std::string::npos);
}

TEST(TPost, RulesFollowThePaperFormulas) {
  const std::vector<double> ts = {999, 899, 799, 699, 599, 500, 400, 300, 200, 100};
  const int64_t n = 28, m = 12;  // N / m = 7/3
  EXPECT_DOUBLE_EQ(compute_t_post(TPostRule::kNone, ts, 3, n, m), 699);
  EXPECT_DOUBLE_EQ(compute_t_post(TPostRule::kUniform, ts, 3, n, m), 699 - 50);
  EXPECT_NEAR(compute_t_post(TPostRule::kRescale, ts, 0, n, m), 999 - 100 * 28.0 / 12.0, 1e-9);
  // anneal: first step as rescale, later t - max(i * N/m * t/1000, 10)
  EXPECT_NEAR(compute_t_post(TPostRule::kAnneal, ts, 0, n, m), 999 - 100 * 28.0 / 12.0, 1e-9);
  EXPECT_NEAR(compute_t_post(TPostRule::kAnneal, ts, 3, n, m), 699 - 100 * 28.0 / 12.0 * 0.699, 1e-9);
  EXPECT_NEAR(compute_t_post(TPostRule::kAnneal, ts, 9, n, m), 100 - 23.333333333333332, 1e-9);
  const std::vector<double> fine = {999, 990, 40, 39};
  EXPECT_NEAR(compute_t_post(TPostRule::kAnneal, fine, 3, n, m), 29, 1e-9);  // the floor of 10 applies
  // anneal with other parameters: t - max(scale * i * N/m * t/1000, floor); the defaults are the paper's.
  const AnnealParams tuned{20.0, 0.5};
  EXPECT_NEAR(compute_t_post(TPostRule::kAnneal, ts, 0, n, m, tuned), 999 - 100 * 28.0 / 12.0, 1e-9);  // first: rescale
  EXPECT_NEAR(compute_t_post(TPostRule::kAnneal, ts, 3, n, m, tuned), 699 - 0.5 * 100 * 28.0 / 12.0 * 0.699, 1e-9);
  EXPECT_NEAR(compute_t_post(TPostRule::kAnneal, ts, 9, n, m, tuned), 100 - 20, 1e-9);  // 0.5 * 23.3 < 20
  EXPECT_NEAR(compute_t_post(TPostRule::kAnneal, fine, 3, n, m, tuned), 19, 1e-9);
  for (int64_t k = 0; k < 10; ++k)
    EXPECT_EQ(compute_t_post(TPostRule::kAnneal, ts, k, n, m, AnnealParams{10.0, 1.0}),
              compute_t_post(TPostRule::kAnneal, ts, k, n, m));
  // clamped into [0, 999]
  EXPECT_DOUBLE_EQ(compute_t_post(TPostRule::kRescale, ts, 9, n, m), 0);
  EXPECT_THROW(parse_t_post_rule("rescaled"), Error);
}

TEST(FeedbackSteps, ModesPickTheDocumentedSteps) {
  auto picked = [](FeedbackSteps s, int64_t n) {
    std::vector<int64_t> out;
    for (int64_t k = 0; k < n; ++k)
      if (s.uses_feedback(k, n)) out.push_back(k);
    return out;
  };
  FeedbackSteps s;
  s.mode = FeedbackSteps::Mode::kOuter;
  s.count = 2;
  EXPECT_EQ(picked(s, 10), (std::vector<int64_t>{0, 1, 8, 9}));
  s.mode = FeedbackSteps::Mode::kFirst;
  s.count = 1;
  EXPECT_EQ(picked(s, 5), (std::vector<int64_t>{0}));
  s.mode = FeedbackSteps::Mode::kLast;
  EXPECT_EQ(picked(s, 5), (std::vector<int64_t>{4}));
  s.mode = FeedbackSteps::Mode::kAlternating;
  EXPECT_EQ(picked(s, 5), (std::vector<int64_t>{0, 2, 4}));
  s.mode = FeedbackSteps::Mode::kList;
  s.steps = {1, 3};
  EXPECT_EQ(picked(s, 5), (std::vector<int64_t>{1, 3}));
  // Negative entries count from the end, so [2, -2] is steps 2 and 9 of 11 and 2 and 8 of 10.
  s.steps = {2, -2};
  EXPECT_EQ(picked(s, 11), (std::vector<int64_t>{2, 9}));
  EXPECT_EQ(picked(s, 10), (std::vector<int64_t>{2, 8}));
  EXPECT_NO_THROW(s.validate(3));
  s.steps = {-5};
  EXPECT_EQ(picked(s, 5), (std::vector<int64_t>{0}));
  EXPECT_THROW(s.validate(4), Error);
  s.steps = {7};
  EXPECT_THROW(s.validate(5), Error);
  EXPECT_THROW(parse_feedback_steps_mode("outers"), Error);
}

TEST(Caching, LocationsPickTheDocumentedBlocks) {
  CacheOptions c;
  c.num_blocks = 4;
  c.location = CacheLocation::kFirst;
  EXPECT_EQ(c.cached_blocks(10), (std::vector<int64_t>{0, 1, 2, 3}));
  c.location = CacheLocation::kLast;
  EXPECT_EQ(c.cached_blocks(10), (std::vector<int64_t>{6, 7, 8, 9}));
  c.location = CacheLocation::kOuter;
  EXPECT_EQ(c.cached_blocks(10), (std::vector<int64_t>{0, 1, 8, 9}));
  c.location = CacheLocation::kInner;
  EXPECT_EQ(c.cached_blocks(10), (std::vector<int64_t>{3, 4, 5, 6}));
  c.location = CacheLocation::kAlternating;
  EXPECT_EQ(c.cached_blocks(8), (std::vector<int64_t>{0, 2, 4, 6}));
  c.num_blocks = 11;
  EXPECT_THROW(c.validate(10), Error);
  c.num_blocks = 2;
  c.interval = 0;
  EXPECT_THROW(c.validate(10), Error);
}

namespace {

// A method as a run config would choose it: "baseline", "ilf" (loop and schedule) or "cache".
struct MethodChoice {
  std::string name = "baseline";
  int64_t loop_begin = 0, loop_end = 0;
  IlfSettings ilf;
  CacheOptions cache;
};

AccelerationMethodPtr make_method(const MethodChoice& c, FeedbackModuleImpl* feedback = nullptr) {
  if (c.name == "ilf") return std::make_unique<IlfMethod>(c.ilf, c.loop_begin, c.loop_end, feedback);
  if (c.name == "cache") return std::make_unique<CacheMethod>(c.cache);
  return std::make_unique<BaselineMethod>();
}

int64_t planned_forwards(const std::string& method, int64_t steps, std::function<void(MethodChoice&)> set = nullptr) {
  MethodChoice c;
  c.name = method;
  if (set) set(c);
  DPMSolverMultistep solver;
  return plan_sampling(*make_method(c), solver, steps, 28).total_block_forwards;
}
}  // namespace

TEST(Plan, ReproducesThePaperBlockForwardCounts) {
  EXPECT_EQ(planned_forwards("baseline", 20), 560);
  EXPECT_EQ(planned_forwards("baseline", 12), 336);
  auto loop_8_19_outer_2 = [](MethodChoice& o) {
    o.loop_begin = 8, o.loop_end = 19;
    o.ilf.feedback_steps.mode = FeedbackSteps::Mode::kOuter;
    o.ilf.feedback_steps.count = 2;
  };
  EXPECT_EQ(planned_forwards("ilf", 10, loop_8_19_outer_2), 332);
  EXPECT_EQ(planned_forwards("ilf", 12, loop_8_19_outer_2), 388);
  EXPECT_EQ(planned_forwards("ilf", 12, [](MethodChoice& o) { o.loop_begin = 0, o.loop_end = 5; }), 420);
  auto inner_18_every = [](int64_t k) {
    return [k](MethodChoice& o) {
      o.cache.location = CacheLocation::kInner;
      o.cache.num_blocks = 18;
      o.cache.interval = k;
    };
  };
  EXPECT_EQ(planned_forwards("cache", 20, inner_18_every(3)), 326);
  EXPECT_EQ(planned_forwards("cache", 20, inner_18_every(2)), 380);
}

TEST(Plan, ImpossibleSettingsAreRejectedWithTheirNames) {
  DPMSolverMultistep solver;
  MethodChoice o;
  EXPECT_NE(error_of([&] { plan_sampling(*make_method(o), solver, 0, 28); }).find("steps"), std::string::npos);
  o.name = "ilf";
  o.loop_begin = 20, o.loop_end = 28;
  EXPECT_NE(error_of([&] { plan_sampling(*make_method(o), solver, 10, 28); }).find("loop"), std::string::npos);
  o.loop_begin = 9, o.loop_end = 8;
  EXPECT_NE(error_of([&] { plan_sampling(*make_method(o), solver, 10, 28); }).find("loop"), std::string::npos);
  EXPECT_THROW(find_acceleration_method("ILF"), Error);
}

namespace {
SamplingResult run(DiT& model, FeedbackModuleImpl* fb, const MethodChoice& c, const SamplingOptions& o, uint64_t seed) {
  DPMSolverMultistep solver;
  auto gen = at::detail::createCPUGenerator(seed);
  const auto x_T = torch::randn({2, 4, 8, 8}, gen);
  const auto in = labels({2, 7});
  const AccelerationMethodPtr method = make_method(c, fb);
  return sample(*model, *method, solver, o, x_T, in, model->null_condition(in));
}
}  // namespace

TEST(Sampler, CachingEveryStepEqualsThePlainSampler) {
  DiT model = tiny_dit();
  SamplingOptions o;
  o.steps = 6;
  o.guidance_scale = 3.0;
  MethodChoice base, cached;
  cached.name = "cache";
  cached.cache.num_blocks = 4;
  cached.cache.interval = 1;
  const auto a = run(model, nullptr, base, o, 1), b = run(model, nullptr, cached, o, 1);
  EXPECT_TRUE(torch::equal(a.samples, b.samples));
  EXPECT_EQ(a.block_forwards, b.block_forwards);
}

TEST(Sampler, ReportedBlockForwardsMatchThePlan) {
  DiT model = tiny_dit(6);
  FeedbackModule fb(*model, FeedbackOptions{2, 3, FeedbackInit::kCopyLoopEnd});
  SamplingOptions o;
  o.steps = 7;
  o.guidance_scale = 2.0;
  MethodChoice c;
  c.name = "ilf";
  c.loop_begin = 2, c.loop_end = 3;
  c.ilf.t_post = TPostRule::kAnneal;
  c.ilf.feedback_steps.mode = FeedbackSteps::Mode::kOuter;
  c.ilf.feedback_steps.count = 2;
  const auto ilf = run(model, fb.get(), c, o, 3);
  EXPECT_EQ(ilf.block_forwards, ilf.plan.total_block_forwards);
  EXPECT_EQ(ilf.block_forwards, 6 * 7 + 3 * 4);
  for (const StepPlan& s : ilf.plan.steps) EXPECT_EQ(s.block_forwards_run, s.action.block_forwards) << "step " << s.index;
  c.name = "cache";
  c.cache.num_blocks = 3;
  c.cache.interval = 3;
  const auto cached = run(model, nullptr, c, o, 3);
  EXPECT_EQ(cached.block_forwards, cached.plan.total_block_forwards);
  EXPECT_EQ(cached.block_forwards, 6 * 3 + 3 * 4);  // full steps 0, 3, 6
  for (const StepPlan& s : cached.plan.steps) EXPECT_EQ(s.block_forwards_run, s.action.block_forwards) << "step " << s.index;
}

TEST(Sampler, SameSeedGivesTheSameSamplesAndAnotherSeedDoesNot) {
  DiT model = tiny_dit();
  SamplingOptions o;
  o.steps = 4;
  o.guidance_scale = 4.0;
  const MethodChoice base;
  const auto a = run(model, nullptr, base, o, 11), b = run(model, nullptr, base, o, 11), c = run(model, nullptr, base, o, 12);
  EXPECT_TRUE(torch::equal(a.samples, b.samples));
  EXPECT_FALSE(torch::equal(a.samples, c.samples));
}

TEST(Sampler, UntrainedFeedbackWithTPostNoneEqualsTheBaseline) {
  DiT model = tiny_dit();
  FeedbackModule fb(*model, FeedbackOptions{1, 4, FeedbackInit::kCopyLoopEnd});
  SamplingOptions o;
  o.steps = 5;
  o.guidance_scale = 1.5;
  const auto base = run(model, nullptr, MethodChoice{}, o, 5);
  MethodChoice c;
  c.name = "ilf";
  c.loop_begin = 1, c.loop_end = 4;
  const auto ilf = run(model, fb.get(), c, o, 5);
  EXPECT_TRUE(torch::equal(base.samples, ilf.samples));
  EXPECT_EQ(ilf.block_forwards, 5 * (6 + 4 + 1));
}
