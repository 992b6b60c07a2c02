// FORA (see include/ilf/accel/fora.h).
#include "ilf/accel/fora.h"

#include "ilf/error.h"

namespace ilf {

MethodSettingsPtr parse_fora_settings(ConfigReader& r) {
  auto s = std::make_shared<ForaSettings>();
  s->interval = r.get<int64_t>("fora.interval", s->interval);
  if (s->interval < 1) throw r.invalid("fora.interval", "an integer >= 1 (1 = compute every step)");
  return s;
}

StepAction ForaMethod::plan_step(const StepInfo& step) const {
  StepAction a;
  a.t_post = step.timestep();
  a.block_forwards = step.depth;
  if (step.index % settings_.interval != 0) {
    a.kind = "reuse";
    for (int64_t j = 0; j < step.depth; ++j) a.reused_blocks.push_back(j);
    a.block_forwards = 0;
    a.extra_work = "one add per block";
  }
  return a;
}

torch::Tensor ForaMethod::forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t,
                                  const ConditionInputs& inputs, const StepInfo& step, StepAction& action) {
  if (action.reused_blocks.empty()) return forward_with_residuals(runner, x, t, inputs, nullptr, &residuals_);
  if (residuals_.empty()) throw Error("fora: step " + std::to_string(step.index) + " reuses blocks before any full step");
  return forward_with_residuals(runner, x, t, inputs, [&](int64_t j) { return residuals_[static_cast<size_t>(j)]; });
}

}  // namespace ilf
