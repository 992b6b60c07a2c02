// The plain step (see include/ilf/accel/baseline.h).
#include "ilf/accel/baseline.h"

namespace ilf {

torch::Tensor BlockRunner::forward(const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs) {
  torch::Tensor h = embed(x);  // (B, T, D)
  const Conditioning cond = condition(t, inputs);
  for (int64_t j = 0; j < backbone_.depth(); ++j) h = block(j, h, cond);
  return head(h, cond, x.size(2), x.size(3));
}

StepAction BaselineMethod::plan_step(const StepInfo& step) const {
  StepAction a;
  a.t_post = step.timestep();
  a.block_forwards = step.depth;
  return a;
}

torch::Tensor BaselineMethod::forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t,
                                      const ConditionInputs& inputs, const StepInfo&, StepAction&) {
  return runner.forward(x, t, inputs);
}

}  // namespace ilf
