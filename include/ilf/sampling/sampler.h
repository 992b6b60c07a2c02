// The sampling loop: baseline, ILF and caching methods over any Solver, with classifier-free
// guidance in one batched forward, exact block-forward accounting, and a weight-free plan of what
// each step will do (`ilf_sample --plan`).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ilf/ilf/caching.h"
#include "ilf/ilf/feedback.h"
#include "ilf/ilf/feedback_schedule.h"
#include "ilf/io/config.h"
#include "ilf/models/backbone.h"
#include "ilf/sampling/solver.h"

namespace ilf {

enum class SamplingMethod { kBaseline, kIlf, kCache };
SamplingMethod parse_sampling_method(const std::string& name);
std::string to_string(SamplingMethod method);

struct SamplingOptions {
  SamplingMethod method = SamplingMethod::kBaseline;
  int64_t steps = 20;
  double guidance_scale = 1.0;   // classifier-free guidance runs when != 1
  int64_t guided_channels = 0;   // 0: all eps channels; 3: the official DiT/PixArt forward_with_cfg slicing
  // ILF
  int64_t loop_begin = 0;
  int64_t loop_end = 0;
  TPostRule t_post = TPostRule::kNone;
  FeedbackSteps feedback_steps;
  // Caching
  CacheOptions cache;

  // Throws ilf::Error for impossible settings (steps < 1, loop outside the depth, b > e, ...).
  void validate(int64_t depth) const;
};

// Reads "sampling" {method, steps, guidance_scale, guided_channels}, "ilf" {loop_begin, loop_end,
// t_post, feedback_steps {mode, count, steps}} and "cache" {location, num_blocks, interval}.
SamplingOptions sampling_options_from_config(ConfigReader& reader);

// What one sampling step does, independent of weights, batch size and guidance.
struct StepPlan {
  int64_t index = 0;
  double timestep = 0;  // model time t_k
  double sigma = 0;     // solver noise level at t_k
  bool feedback = false;
  double t_post = 0;    // time conditioning after the feedback (== timestep without feedback)
  bool full_step = true;             // caching: every block recomputed
  std::vector<int64_t> cached_blocks;  // caching: blocks reused on this step
  int64_t block_forwards = 0;
};

struct SamplingPlan {
  std::vector<StepPlan> steps;
  int64_t total_block_forwards = 0;
  nlohmann::json to_json() const;
};

// Calls solver.set_timesteps(options.steps) and lays out every step for a backbone of `depth` blocks.
SamplingPlan plan_sampling(const SamplingOptions& options, Solver& solver, int64_t depth);

// Joins two condition sets along the batch dimension ([a; b]).
ConditionInputs concat_conditions(const ConditionInputs& a, const ConditionInputs& b);

struct SamplingResult {
  torch::Tensor samples;  // (B, C, H, W)
  SamplingPlan plan;
  int64_t block_forwards = 0;  // counted while running; equals plan.total_block_forwards
};

using ProgressCallback = std::function<void(int64_t step, int64_t num_steps)>;

// Runs the sampler from x_T (B, C, H, W). `feedback` is required for the ILF method; `null_inputs`
// is required when guidance runs (the backbone's null_condition(inputs) is a good default).
SamplingResult sample(Backbone& backbone, FeedbackModuleImpl* feedback, Solver& solver, const SamplingOptions& options,
                      const torch::Tensor& x_T, const ConditionInputs& inputs, const ConditionInputs& null_inputs,
                      const ProgressCallback& progress = nullptr);

}  // namespace ilf
