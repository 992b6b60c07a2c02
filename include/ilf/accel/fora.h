// FORA (Fast-Forward Caching, Selvaraju et al. 2024), the method "fora": every block's attention and
// MLP outputs are computed on every N-th step and reused on the steps between. A block's reused
// outputs add up to its residual (block_residuals.h), so a reuse step runs no block at all: the
// stream is the embedding plus the stored residual of each block, under the new step's time (0 block
// forwards; extra work: one add per block). interval 1 is exactly the plain sampler.
#pragma once
#include "ilf/accel/block_residuals.h"
#include "ilf/accel/method.h"
#include "ilf/accel/registry.h"

namespace ilf {

// The "fora" config section.
struct ForaSettings : MethodSettings {
  ForaSettings() : MethodSettings("fora") {}
  int64_t interval = 3;  // N: compute on steps k with k % N == 0
};

// Reads "fora" {interval}.
MethodSettingsPtr parse_fora_settings(ConfigReader& reader);

class ForaMethod : public AccelerationMethod {
 public:
  explicit ForaMethod(const ForaSettings& settings) : settings_(settings) {}

  std::string name() const override { return "fora"; }
  nlohmann::json settings() const override { return {{"interval", settings_.interval}}; }
  StepAction plan_step(const StepInfo& step) const override;
  void begin(int64_t num_steps) override { residuals_.clear(); }
  torch::Tensor forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs,
                        const StepInfo& step, StepAction& action) override;

 private:
  ForaSettings settings_;
  BlockResiduals residuals_;  // from the last full step
};

}  // namespace ilf
