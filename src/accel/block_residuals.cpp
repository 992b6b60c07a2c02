// The forward with computed or replaced blocks (see include/ilf/accel/block_residuals.h).
#include "ilf/accel/block_residuals.h"

namespace ilf {

torch::Tensor forward_with_residuals(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t,
                                     const ConditionInputs& inputs, const std::function<torch::Tensor(int64_t)>& replacement,
                                     BlockResiduals* record, std::vector<torch::Tensor>* stream) {
  const int64_t depth = runner.backbone().depth();
  if (record) record->assign(static_cast<size_t>(depth), torch::Tensor());
  if (stream) stream->clear();
  torch::Tensor h = runner.embed(x);  // (B, T, D)
  const Conditioning cond = runner.condition(t, inputs);
  for (int64_t j = 0; j < depth; ++j) {
    if (stream) stream->push_back(h);
    const torch::Tensor reused = replacement ? replacement(j) : torch::Tensor();
    if (reused.defined()) {
      h = h + reused;
      continue;
    }
    torch::Tensor out = runner.block(j, h, cond);
    if (record) (*record)[static_cast<size_t>(j)] = out - h;
    h = out;
  }
  if (stream) stream->push_back(h);
  return runner.head(h, cond, x.size(2), x.size(3));
}

}  // namespace ilf
