// The inner-loop forward of ILF (paper Eq. 2-3; docs/design.md, "The method"), the model output for x_t:
//   h = embed(x); run B_0..B_e under cond(t), keeping h_{b-1} and f_e;
//   f_feed = F(f_e, cond(t));
//   h = h_{b-1}; for j in b..e: h = B_j(h + s_j * f_feed, cond(t_post));   (f_feed times `strength`
//   when it is not 1: a sampling-time weakening or strengthening of the learned feedback)
//   for j in e+1..N-1: h = B_j(h, cond(t_post)); out = head(h, cond(t_post)).
// Every block, F included, runs through the caller's BlockRunner (models/block_runner.h), which
// counts it: N + m + 1 block forwards (m = e - b + 1).
#pragma once
#include <torch/torch.h>

#include "ilf/feedback/feedback.h"
#include "ilf/models/backbone.h"
#include "ilf/models/block_runner.h"

namespace ilf {

// x (B, C, H, W), t and t_post (B,) -> (B, out_channels, H, W), on the runner's backbone.
torch::Tensor inner_loop_forward(BlockRunner& runner, FeedbackModuleImpl& feedback, const torch::Tensor& x,
                                 const torch::Tensor& t, const torch::Tensor& t_post, const ConditionInputs& inputs,
                                 double strength = 1.0);

// F(f_e, cond) run through `runner` (one block forward) times `strength`, the multiply skipped at 1
// (the trained forward, bit for bit); f_e and the result (B, T, D). The feedback of inner_loop_forward
// and of ilf_cache's reuse outside the loop.
torch::Tensor feedback_at_strength(BlockRunner& runner, FeedbackModuleImpl& feedback, const torch::Tensor& f_e,
                                   const Conditioning& cond, double strength);

}  // namespace ilf
