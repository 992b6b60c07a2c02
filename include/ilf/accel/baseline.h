// The plain sampler's step: every block of the backbone, once (N block forwards). The reference every
// other method is measured against, and the method "baseline".
#pragma once
#include "ilf/accel/method.h"

namespace ilf {

class BaselineMethod : public AccelerationMethod {
 public:
  std::string name() const override { return "baseline"; }
  nlohmann::json settings() const override { return nlohmann::json::object(); }
  StepAction plan_step(const StepInfo& step) const override;
  torch::Tensor forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs,
                        const StepInfo& step, StepAction& action) override;
};

}  // namespace ilf
