// ILF combined with caching, the method "ilf_cache": Inner Loop Feedback on the steps its schedule picks
// ("ilf" section: loop, t_post, feedback_steps) and block caching elsewhere, in one of two modes
// ("ilf_cache.mode"):
//   alternate  the steps without feedback are cached as the "cache" section says (its location,
//              num_blocks and interval, counted over the steps without feedback: the q-th such step is
//              full when q % interval == 0); a feedback step costs N + m + 1, a full step N, a reuse
//              step N - c;
//   outside    the steps without feedback are full and store every block's residual; a feedback step
//              after one reuses the residuals of the blocks outside the loop and runs only the loop
//              twice and F: 2m + 1 block forwards (before any full step it is a plain feedback step);
//   forecast   ILF with TaylorSeer: the steps without feedback forecast every block's feature as the
//              "taylorseer" section says (its interval and order, counted over the steps without
//              feedback: the q-th such step is full, N block forwards, and updates the forecasters when
//              q % interval == 0; the others run no block and extrapolate each block's residual in the
//              step index); the feedback steps run in full with the inner loop (N + m + 1) and leave the
//              forecasters alone, since their features after the loop are the feedback's, not the plain
//              trajectory's. Interval 1 is ILF exactly.
// Both the plan and the run come from the same step rules below; `--plan` shows which steps have
// feedback and which blocks each reuses.
#pragma once
#include "ilf/accel/block_residuals.h"
#include "ilf/accel/cache.h"
#include "ilf/accel/ilf.h"
#include "ilf/accel/method.h"
#include "ilf/accel/registry.h"
#include "ilf/accel/taylorseer.h"

namespace ilf {

// The "ilf_cache" config section.
struct IlfCacheSettings : MethodSettings {
  IlfCacheSettings() : MethodSettings("ilf_cache") {}
  std::string mode = "alternate";  // "alternate", "outside" or "forecast"
};

// Reads "ilf_cache" {mode}.
MethodSettingsPtr parse_ilf_cache_settings(ConfigReader& reader);

class IlfCacheMethod : public AccelerationMethod {
 public:
  IlfCacheMethod(const IlfCacheSettings& settings, const IlfSettings& ilf, const CacheOptions& cache,
                 const TaylorSeerSettings& forecast, int64_t loop_begin, int64_t loop_end,
                 FeedbackModuleImpl* feedback = nullptr);

  std::string name() const override { return "ilf_cache"; }
  nlohmann::json settings() const override;
  void validate(int64_t depth, int64_t num_steps) const override;
  StepAction plan_step(const StepInfo& step) const override;
  void begin(int64_t num_steps) override {
    residuals_.clear();
    forecasters_.clear();
  }
  torch::Tensor forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs,
                        const StepInfo& step, StepAction& action) override;

 private:
  // Steps before `k` without feedback (the position of step k among them, when it has none).
  int64_t plain_steps_before(int64_t k, int64_t num_steps) const;
  torch::Tensor feedback_reusing_outside(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t,
                                         const torch::Tensor& t_post, const ConditionInputs& inputs);

  IlfCacheSettings settings_;
  IlfSettings ilf_;
  CacheOptions cache_;
  TaylorSeerSettings forecast_;  // mode "forecast"
  IlfMethod ilf_method_;         // the feedback steps' plan and forward
  int64_t loop_begin_, loop_end_;
  FeedbackModuleImpl* feedback_;
  BlockResiduals residuals_;                   // from the last full step without feedback
  std::vector<TaylorForecaster> forecasters_;  // mode "forecast": one per block
};

}  // namespace ilf
