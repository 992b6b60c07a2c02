// Learning-to-Cache (Ma et al. 2024), the method "l2c": a router learned against the frozen backbone
// says, for every step k and block j, how much the block's fresh output matters compared with reusing
// its residual from the previous step. ilf_train trains it (training.mode "l2c", training/l2c_router.h)
// for one step count and solver; here it is fixed to a static schedule at a chosen budget: of the
// (step, block) pairs after the first step, the ones with the lowest router logits reuse their block's
// last computed residual (h <- h + r_j, block_residuals.h) until the budget, a fraction of the plain
// sampler's block forwards, is met. The first step computes every block. Extra work: one add per
// reused block. budget 1 reuses nothing and is exactly the plain sampler.
//
// The router file (safetensors): "router_logits" (steps, depth) float32, metadata format "ilf.l2c_router",
// steps, solver, and the training settings.
#pragma once
#include <string>
#include <vector>

#include "ilf/accel/block_residuals.h"
#include "ilf/accel/method.h"
#include "ilf/accel/registry.h"

namespace ilf {

// The "l2c" config section.
struct L2CSettings : MethodSettings {
  L2CSettings() : MethodSettings("l2c") {}
  std::string router;     // the router file ilf_train writes (required to sample)
  double budget = 0.6;    // block forwards as a fraction of the plain sampler's, in (0, 1]
  double sparsity = 0.1;  // training: weight of the mean router gate in the loss (pushes towards reuse)
  torch::Tensor logits;   // (steps, depth), from the router file
  // reuse[k][j]: step k reuses block j (the static schedule).
  std::vector<std::vector<bool>> reuse;
};

// Reads "l2c" {router, budget, sparsity}, the router file, and fixes the schedule.
MethodSettingsPtr parse_l2c_settings(ConfigReader& reader);

// The static schedule of `logits` (steps, depth) at `budget`: the lowest-logit pairs of steps >= 1
// reused until the block forwards are at most round(budget x steps x depth) (or every pair after the
// first step is reused). Ties: the earlier step, then the earlier block, is reused first.
std::vector<std::vector<bool>> l2c_schedule(const torch::Tensor& logits, double budget);

class L2CMethod : public AccelerationMethod {
 public:
  explicit L2CMethod(const L2CSettings& settings) : settings_(settings) {}

  std::string name() const override { return "l2c"; }
  nlohmann::json settings() const override;
  void validate(int64_t depth, int64_t num_steps) const override;
  StepAction plan_step(const StepInfo& step) const override;
  void begin(int64_t num_steps) override { residuals_.clear(); }
  torch::Tensor forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs,
                        const StepInfo& step, StepAction& action) override;

 private:
  L2CSettings settings_;
  BlockResiduals residuals_;  // each block's residual at the last step that computed it
};

}  // namespace ilf
