// The sampling loop: any acceleration method (accel/) over any Solver, with classifier-free guidance
// in one batched forward (guidance.h), block forwards counted where the blocks run, and a weight-free
// plan of what each step will do (`ilf_sample --plan`), made by the same method object that runs the
// steps.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ilf/accel/method.h"
#include "ilf/models/backbone.h"
#include "ilf/sampling/solver.h"

namespace ilf {

// The accepted classifier-free guidance scales (config "sampling.guidance_scale", --cfg, and the
// trainer's guidance keys): 0 to 1000, far above every published setting (1 .. 20); larger scales gave
// all-black images (1e20) or NaN (1e308), negative ones are not guidance.
constexpr double kMaxGuidanceScale = 1000;

// The most images of one sampling run (--batch of the sampling tools, images per encoder call of
// ilf_prepare_data): far beyond what fits in any GPU's memory at once; 2^63-1 overflowed the run count
// and ran nothing at exit 0.
constexpr int64_t kMaxBatch = 1000000;
// The longest image side in pixels (ilf_sample --height / --width, ilf_prepare_data --resolution):
// 16384, twice the largest published model's (PixArt-Sigma 4K); larger sides were cut when narrowed
// to int (--resolution 4294967328 became 32).
constexpr int64_t kMaxImageSide = 16384;

// The "sampling" section's loop settings (the method and the solver are chosen beside them).
struct SamplingOptions {
  int64_t steps = 20;
  double guidance_scale = 1.0;  // classifier-free guidance runs when != 1
  int64_t guided_channels = 0;  // 0: all eps channels; 3: the official DiT/PixArt forward_with_cfg slicing
  // Stop with an error naming the step whose latents became NaN or Inf. The check reads one value back
  // per step (a device sync on CUDA), so a CUDA-graph capture of the whole loop (ilf_bench --cuda-graph,
  // where reading back is not allowed) turns it off; its eager reference run keeps it.
  bool check_finite_latents = true;

  // Throws ilf::Error for impossible settings (steps < 1, guided_channels < 0, guidance_scale outside
  // [0, kMaxGuidanceScale]).
  void validate() const;
};

// One row of a plan: the solver's time and noise level, and what the method does at that step.
struct StepPlan {
  int64_t index = 0;
  double timestep = 0;  // model time t_k
  double sigma = 0;     // solver noise level at t_k
  StepAction action;
  int64_t block_forwards_run = -1;  // counted while sampling (-1: not run, i.e. a plan only)
};

struct SamplingPlan {
  std::string method;
  std::vector<StepPlan> steps;
  int64_t total_block_forwards = 0;
  nlohmann::json to_json() const;
};

// Calls solver.set_timesteps(steps), validates the method for `depth` blocks and lays out every step.
SamplingPlan plan_sampling(const AccelerationMethod& method, Solver& solver, int64_t steps, int64_t depth);

// Joins two condition sets along the batch dimension ([a; b]).
ConditionInputs concat_conditions(const ConditionInputs& a, const ConditionInputs& b);

struct SamplingResult {
  torch::Tensor samples;       // (B, C, H, W)
  SamplingPlan plan;           // what each step did (a method that decides at run time updates its rows)
  int64_t block_forwards = 0;  // counted while running; equals plan.total_block_forwards
};

using ProgressCallback = std::function<void(int64_t step, int64_t num_steps)>;

// Runs the sampler from x_T (B, C, H, W). `null_inputs` is required when guidance runs (the backbone's
// null_condition(inputs) is a good default).
SamplingResult sample(Backbone& backbone, AccelerationMethod& method, Solver& solver, const SamplingOptions& options,
                      const torch::Tensor& x_T, const ConditionInputs& inputs, const ConditionInputs& null_inputs,
                      const ProgressCallback& progress = nullptr);

}  // namespace ilf
