// The inner-loop forward of ILF (see include/ilf/feedback/inner_loop.h and docs/design.md, "The method").
#include "ilf/feedback/inner_loop.h"

namespace ilf {

torch::Tensor feedback_at_strength(BlockRunner& runner, FeedbackModuleImpl& feedback, const torch::Tensor& f_e,
                                   const Conditioning& cond, double strength) {
  torch::Tensor f_feed = runner.extra_block(*feedback.block, f_e, cond);  // (B, T, D)
  return strength == 1.0 ? f_feed : f_feed * strength;
}

torch::Tensor inner_loop_forward(BlockRunner& runner, FeedbackModuleImpl& feedback, const torch::Tensor& x,
                                 const torch::Tensor& t, const torch::Tensor& t_post, const ConditionInputs& inputs,
                                 double strength) {
  const int64_t depth = runner.backbone().depth();
  const int64_t b = feedback.loop_begin(), e = feedback.loop_end();

  torch::Tensor h = runner.embed(x);  // (B, T, D)
  const Conditioning cond_t = runner.condition(t, inputs);

  // First pass: B_0..B_e under t, keeping the input of B_b.
  torch::Tensor loop_input;  // h_{b-1}, (B, T, D)
  for (int64_t j = 0; j <= e; ++j) {
    if (j == b) loop_input = h;
    h = runner.block(j, h, cond_t);
  }
  // Feedback from the loop's output, computed under t.
  const torch::Tensor f_feed = feedback_at_strength(runner, feedback, h, cond_t, strength);  // (B, T, D)

  // Second pass: the loop again with the scaled feedback added to each block's input, then the rest,
  // all under t_post. (Paper Eq. 2-3; we read the feedback as added to every loop block's input.)
  const Conditioning cond_post = runner.condition(t_post, inputs);
  h = loop_input;
  for (int64_t j = b; j <= e; ++j) h = runner.block(j, h + feedback.scale(j).to(h.dtype()) * f_feed, cond_post);
  for (int64_t j = e + 1; j < depth; ++j) h = runner.block(j, h, cond_post);

  return runner.head(h, cond_post, x.size(2), x.size(3));
}

}  // namespace ilf
