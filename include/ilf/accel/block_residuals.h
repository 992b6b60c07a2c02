// Block residuals, the feature every caching method in accel/ reuses or predicts: a block's
// residual r_j = B_j(h) - h is the sum of its attention, cross-attention and MLP branch outputs
// (each added to the stream), so "reuse the cached attention and MLP outputs" (FORA), "reuse the
// deviation of a block range" (Delta-DiT), "reuse the stack's residual" (TeaCache) and "forecast the
// features" (TaylorSeer) all become: h <- h + (stored or predicted residual) instead of h <- B_j(h).
// This header runs a forward whose blocks are each either computed or replaced that way.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <vector>

#include "ilf/accel/method.h"

namespace ilf {

// Per-block residuals of one step, (B, T, D) each; undefined for blocks not recorded.
using BlockResiduals = std::vector<torch::Tensor>;

// The forward pass where block j is computed when `replacement(j)` is undefined and otherwise replaced
// by h <- h + replacement(j). With `record`, the residual of every computed block is stored there
// (resized to the depth); with `stream`, the stream before each block and after the last (depth + 1
// tensors: a range [a, b]'s deviation is stream[b + 1] - stream[a]).
// x (B, C, H, W), t (B,) -> (B, out_channels, H, W).
torch::Tensor forward_with_residuals(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t,
                                     const ConditionInputs& inputs, const std::function<torch::Tensor(int64_t)>& replacement,
                                     BlockResiduals* record = nullptr, std::vector<torch::Tensor>* stream = nullptr);

}  // namespace ilf
