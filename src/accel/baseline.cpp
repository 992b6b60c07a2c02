// The plain step (see include/ilf/accel/baseline.h).
#include "ilf/accel/baseline.h"

namespace ilf {

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
