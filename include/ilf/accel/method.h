// The acceleration interface: how one sampling step computes the model output. Every method (the plain
// backbone, ILF's inner loop, the caching baseline, and the training-free and learned caches ILF is
// compared with) is one class behind this interface, in one file of accel/, registered in
// accel/registry.cpp. The sampler (sampling/sampler.h) knows no method by name: it asks the method
// what each step will do (plan_step, which `ilf_sample --plan` prints without weights) and then lets
// it run the step (forward), counting the blocks that really run through a BlockRunner
// (models/block_runner.h), so that the plan and the measured count can be compared (tests do, per method).
//
// Cost unit: one transformer block forward of the backbone (the feedback block F counts as one).
// What a method costs beyond that (e.g. TeaCache's modulated-input distance, TaylorSeer's elementwise
// forecast) is stated in its file and in its StepAction::extra_work.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ilf/models/backbone.h"
#include "ilf/models/block_runner.h"

namespace ilf {

// One sampling step as a method sees it before it runs.
struct StepInfo {
  int64_t index = 0;              // k in [0, num_steps)
  int64_t num_steps = 0;          // n
  std::vector<double> timesteps;  // the solver's model times t_0 > t_1 > ... (n of them)
  int64_t depth = 0;              // N, the backbone's blocks

  double timestep() const { return timesteps.at(static_cast<size_t>(index)); }
};

// What one step does: a row of the plan, decided by plan_step() from the settings alone.
struct StepAction {
  std::string kind = "full";  // "full", "feedback", "reuse", "forecast", "skip", ... (method-defined)
  int64_t block_forwards = 0;
  bool feedback = false;               // ILF: the inner loop runs with feedback
  double t_post = 0;                   // the time the blocks after the feedback see (the step's t otherwise)
  std::vector<int64_t> reused_blocks;  // blocks whose output is reused or predicted instead of computed
  // Decided while sampling (TeaCache): block_forwards is the most the step can cost; the sampler's
  // result holds what it did.
  bool decided_at_run_time = false;
  std::string extra_work;  // work beyond block forwards, in words ("" = none)
};

class AccelerationMethod {
 public:
  virtual ~AccelerationMethod() = default;

  virtual std::string name() const = 0;
  // The settings that define the method's output, for reports, PNG metadata and plans.
  virtual nlohmann::json settings() const = 0;
  // Throws ilf::Error (naming the config key) when the settings cannot work for a backbone of `depth`
  // blocks sampled in `num_steps` steps.
  virtual void validate(int64_t depth, int64_t num_steps) const {}
  // What step `step` will do; a function of the settings only (no weights, no data).
  virtual StepAction plan_step(const StepInfo& step) const = 0;
  // Called before the first step of every sampling run: forget what an earlier run stored.
  virtual void begin(int64_t num_steps) {}
  // The model output at this step: x (B, C, H, W), t (B,) -> (B, out_channels, H, W). `action` is
  // plan_step(step); methods that decide at run time overwrite it with what they did.
  virtual torch::Tensor forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t,
                                const ConditionInputs& inputs, const StepInfo& step, StepAction& action) = 0;
};
using AccelerationMethodPtr = std::unique_ptr<AccelerationMethod>;

}  // namespace ilf
