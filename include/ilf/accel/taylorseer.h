// TaylorSeer (Liu et al. 2025), the method "taylorseer": full steps every N steps, where each block's
// feature (its residual, the sum of its attention and MLP outputs: block_residuals.h) and its finite
// differences up to `order` are stored; the steps between run no block and forecast every block's
// feature by a Taylor expansion in the step offset from the last full step:
//   f(k0 + d) ~ f + f' d + f'' d^2 / 2,  f' = (f(k0) - f(k1)) / (k0 - k1),  f'' likewise from f'.
// Until enough full steps have passed for the order, the lower orders are used (order 0 = reuse).
// Extra work: (order + 1) elementwise multiply-adds per block on forecast steps.
#pragma once
#include "ilf/accel/block_residuals.h"
#include "ilf/accel/method.h"
#include "ilf/accel/registry.h"

namespace ilf {

// The "taylorseer" config section.
struct TaylorSeerSettings : MethodSettings {
  TaylorSeerSettings() : MethodSettings("taylorseer") {}
  int64_t interval = 3;  // N: full steps k with k % N == 0
  int64_t order = 1;     // 1 or 2
};

// Reads "taylorseer" {interval, order}.
MethodSettingsPtr parse_taylorseer_settings(ConfigReader& reader);

// One feature's Taylor forecaster: the value and backward finite differences at the last update.
class TaylorForecaster {
 public:
  explicit TaylorForecaster(int64_t order) : order_(order) {}
  // A computed value of the feature at `step` (steps increase).
  void update(int64_t step, const torch::Tensor& value);
  // The forecast at `step` >= the last update's step.
  torch::Tensor predict(int64_t step) const;
  bool empty() const { return terms_.empty(); }
  int64_t order_available() const { return static_cast<int64_t>(terms_.size()) - 1; }

 private:
  int64_t order_;
  int64_t last_step_ = 0;
  std::vector<torch::Tensor> terms_;  // f, f', f'' at last_step_
};

class TaylorSeerMethod : public AccelerationMethod {
 public:
  explicit TaylorSeerMethod(const TaylorSeerSettings& settings) : settings_(settings) {}

  std::string name() const override { return "taylorseer"; }
  nlohmann::json settings() const override { return {{"interval", settings_.interval}, {"order", settings_.order}}; }
  StepAction plan_step(const StepInfo& step) const override;
  void begin(int64_t num_steps) override { forecasters_.clear(); }
  torch::Tensor forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs,
                        const StepInfo& step, StepAction& action) override;

 private:
  TaylorSeerSettings settings_;
  std::vector<TaylorForecaster> forecasters_;  // one per block
};

}  // namespace ilf
