// Learning-to-Cache (Ma et al. 2024), the method "l2c", structured as the official implementation
// (github horseee/learning-to-cache) is: sampling steps alternate between full steps and cache steps.
// A full step (k % full_every == 0; step 0 always) computes every block and stores every block's
// residual; a cache step reuses, for the blocks its router switches off, the residual the previous
// step computed (h <- h + r_j, block_residuals.h), and computes the others. So a reused residual is
// never older than one step: the router is trained on exactly that one-step reuse
// (training/l2c_router.h), and a staler cache is an error, not a silent approximation.
//
// The router has one logit per (cache step, block). It is fixed to a static schedule by one of two
// rules: the official threshold (`l2c.threshold`, default 0.1: a block computes when sigmoid(logit) >
// threshold, so how much is reused follows from the training's sparsity weight) or a budget
// (`l2c.budget`, a fraction of the plain sampler's block forwards: the lowest logits are reused until
// it is met; ties reuse the later step first, then the lower block). With full_every > 2 two cache
// steps can follow each other; then a block reused on one is computed on the next, which keeps the
// one-step bound. Extra work: one add per reused block. Threshold 0 or budget 1 reuse nothing and are
// exactly the plain sampler.
//
// Differences from the paper, and why (also in docs/results/acceleration.md): we cache and route whole
// blocks (the gated block residual, the unit every cache method here and the block-forward count use),
// not the attention and MLP branch outputs before their adaLN gates; the official trains on noised
// real images with one DDIM step, we on the plain sampler's own trajectories.
//
// The router file (safetensors): "router_logits" (cache steps, depth) float32, one row per cache step
// in order; metadata format "ilf.l2c_router", steps, full_every, depth, solver and the training settings.
#pragma once
#include <string>
#include <vector>

#include "ilf/accel/block_residuals.h"
#include "ilf/accel/method.h"
#include "ilf/accel/registry.h"

namespace ilf {

// The official DDIM-20 sparsity weight (lambda = 5e-6 per gate of DiT-XL/2's 56 attention and MLP
// units, against a per-element MSE of a unit-variance noise prediction) moved to our 12-block model:
// a unit's gate falls when the output error of reusing it is below about lambda / 2, and with the
// same total error per step spread over 12 units instead of 56, each unit's share is 56 / 12 times
// larger, so lambda = 5e-6 x 56 / 12 (our prediction is also a per-element MSE of unit-variance noise).
constexpr double kL2CDefaultSparsity = 5e-6 * 56.0 / 12.0;

// The "l2c" config section.
struct L2CSettings : MethodSettings {
  L2CSettings() : MethodSettings("l2c") {}
  std::string router;                     // the router file ilf_train writes (required to sample)
  int64_t full_every = 2;                 // a full step every full_every steps (training; sampling takes the router's)
  double threshold = 0.1;                 // compute a block when sigmoid(logit) > threshold (the official rule)
  double budget = 0;                      // > 0: the budget rule instead, block forwards as a fraction in (0, 1]
  double sparsity = kL2CDefaultSparsity;  // training: lambda, the weight of the sum of a step's gates
  int64_t trajectories = 64;              // training: plain trajectories recorded once, drawn from
  torch::Tensor logits;                   // (cache steps, depth), from the router file
  int64_t steps = 0;                      // the step count the router was trained for
  // reuse[k][j]: step k reuses block j (the static schedule, steps rows).
  std::vector<std::vector<bool>> reuse;
};

// Reads "l2c" {router, full_every, threshold | budget, sparsity, trajectories}, the router file, and
// fixes the schedule.
MethodSettingsPtr parse_l2c_settings(ConfigReader& reader);

// Whether step k is a cache step (routed, may reuse the previous step's residuals) of the alternation
// with a full step every `full_every` steps; the cache steps of `num_steps` in order.
bool l2c_is_cache_step(int64_t k, int64_t full_every);
std::vector<int64_t> l2c_cache_steps(int64_t num_steps, int64_t full_every);

// The static schedules, (num_steps) rows of depth flags, from `logits` (cache steps, depth). Only cache
// steps reuse, and no block is reused on two steps in a row (so every reuse is of the step before).
// Threshold rule: reuse where sigmoid(logit) <= threshold. Budget rule: the lowest logits reused until
// the block forwards are at most round(budget x steps x depth); ties: later step, then lower block,
// first. Throws ilf::Error (naming l2c.budget) when the alternation cannot reach the budget.
std::vector<std::vector<bool>> l2c_threshold_schedule(const torch::Tensor& logits, int64_t num_steps, int64_t full_every,
                                                      double threshold);
std::vector<std::vector<bool>> l2c_budget_schedule(const torch::Tensor& logits, int64_t num_steps, int64_t full_every,
                                                   double budget);

class L2CMethod : public AccelerationMethod {
 public:
  explicit L2CMethod(const L2CSettings& settings) : settings_(settings) {}

  std::string name() const override { return "l2c"; }
  nlohmann::json settings() const override;
  void validate(int64_t depth, int64_t num_steps) const override;
  StepAction plan_step(const StepInfo& step) const override;
  void begin(int64_t num_steps) override {
    residuals_.clear();
    computed_at_.clear();
  }
  // Throws ilf::Error when a reused residual is not the previous step's (the one-step bound).
  torch::Tensor forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs,
                        const StepInfo& step, StepAction& action) override;

 private:
  L2CSettings settings_;
  BlockResiduals residuals_;          // each block's residual at the last step that computed it
  std::vector<int64_t> computed_at_;  // ... and that step
};

}  // namespace ilf
