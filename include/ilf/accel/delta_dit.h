// Delta-DiT (Chen et al. 2024), the method "delta_dit": the deviation of a block range, its output
// minus its input, is stored on full steps and added to the range's new input on the steps between
// instead of running the range. Stage-adaptive: in the early steps (k < boundary * steps, when the
// sampler lays out the image's outline) the REAR blocks are cached, in the late steps (details) the
// FRONT blocks. Full steps are those with k % interval == 0; a reuse step costs depth - num_blocks
// block forwards (extra work: one add). num_blocks 0 or interval 1 is exactly the plain sampler.
#pragma once
#include "ilf/accel/block_residuals.h"
#include "ilf/accel/method.h"
#include "ilf/accel/registry.h"

namespace ilf {

// The "delta_dit" config section.
struct DeltaDitSettings : MethodSettings {
  DeltaDitSettings() : MethodSettings("delta_dit") {}
  int64_t num_blocks = 4;  // size of the cached range
  double boundary = 0.5;   // fraction of the steps in the early (rear-cached) stage
  int64_t interval = 2;    // full steps: k % interval == 0
};

// Reads "delta_dit" {num_blocks, boundary, interval}.
MethodSettingsPtr parse_delta_dit_settings(ConfigReader& reader);

class DeltaDitMethod : public AccelerationMethod {
 public:
  explicit DeltaDitMethod(const DeltaDitSettings& settings) : settings_(settings) {}

  std::string name() const override { return "delta_dit"; }
  nlohmann::json settings() const override;
  void validate(int64_t depth, int64_t num_steps) const override;
  StepAction plan_step(const StepInfo& step) const override;
  void begin(int64_t num_steps) override { rear_deviation_ = front_deviation_ = torch::Tensor(); }
  torch::Tensor forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs,
                        const StepInfo& step, StepAction& action) override;

  // Whether step k of n is in the early stage (rear blocks cached).
  bool early_stage(int64_t k, int64_t n) const;

 private:
  DeltaDitSettings settings_;
  torch::Tensor rear_deviation_, front_deviation_;  // output - input of each range on the last full step, (B, T, D)
};

}  // namespace ilf
