// The counting runner of a backbone's stages (see include/ilf/models/block_runner.h).
#include "ilf/models/block_runner.h"

namespace ilf {

torch::Tensor BlockRunner::forward(const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs) {
  torch::Tensor h = embed(x);  // (B, T, D)
  const Conditioning cond = condition(t, inputs);
  for (int64_t j = 0; j < backbone_.depth(); ++j) h = block(j, h, cond);
  return head(h, cond, x.size(2), x.size(3));
}

}  // namespace ilf
