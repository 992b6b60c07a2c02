// Inner Loop Feedback as a sampling method (DESIGN: docs/design.md, "The method"): on the steps the
// schedule picks, the inner-loop forward with the trained feedback module and the post-feedback time
// t_post (N + m + 1 block forwards); on the others the plain forward (N). The method core it runs
// lives in feedback/ (feedback module, inner loop, t_post rules), shared with training.
#pragma once
#include "ilf/accel/method.h"
#include "ilf/accel/registry.h"
#include "ilf/feedback/feedback.h"
#include "ilf/feedback/schedule.h"

namespace ilf {

// The accepted feedback strengths ("ilf.strength", the search's --strengths): 0 to 100; 1 is the
// trained strength, published schedules use 0.25 .. 1.5 (1e30 gave garbage at exit 0).
constexpr double kMaxFeedbackStrength = 100;

// The sampling-time settings of the "ilf" config section (the loop, the init and the weights file are
// the feedback module's, read with the run config's "ilf" section).
struct IlfSettings : MethodSettings {
  IlfSettings() : MethodSettings("ilf") {}
  TPostRule t_post = TPostRule::kNone;
  AnnealParams anneal;    // used by t_post "anneal"
  double strength = 1.0;  // multiplies the feedback F at sampling (the learned scales s_j as trained at 1)
  FeedbackSteps feedback_steps;
};

// Reads "ilf.t_post", "ilf.anneal_floor", "ilf.anneal_scale", "ilf.strength" and "ilf.feedback_steps"
// {mode, count, steps}.
MethodSettingsPtr parse_ilf_settings(ConfigReader& reader);

class IlfMethod : public AccelerationMethod {
 public:
  // `feedback` may be null for planning; forward() needs it. Its loop must be [loop_begin, loop_end].
  IlfMethod(const IlfSettings& settings, int64_t loop_begin, int64_t loop_end, FeedbackModuleImpl* feedback = nullptr);

  std::string name() const override { return "ilf"; }
  nlohmann::json settings() const override;
  void validate(int64_t depth, int64_t num_steps) const override;
  StepAction plan_step(const StepInfo& step) const override;
  torch::Tensor forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs,
                        const StepInfo& step, StepAction& action) override;

  int64_t loop_size() const { return loop_end_ - loop_begin_ + 1; }  // m

 private:
  IlfSettings settings_;
  int64_t loop_begin_, loop_end_;
  FeedbackModuleImpl* feedback_;
};

}  // namespace ilf
