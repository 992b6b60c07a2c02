// The one way blocks run when their cost matters: a BlockRunner runs a backbone's stages (embed,
// condition, blocks, head) and counts every block forward it runs. Every acceleration method
// (accel/method.h) and ILF's inner-loop forward (feedback/inner_loop.h) run their blocks through it, so
// the measured cost of a sampling step is counted by construction and can be compared with its plan.
// Training, which does not report a cost, makes a local runner and ignores the count.
//
// Cost unit: one transformer block forward. A block that is not one of the backbone's own (ILF's
// feedback block F) runs through extra_block() and counts as one, like a backbone block.
#pragma once
#include <torch/torch.h>

#include <cstdint>

#include "ilf/models/backbone.h"

namespace ilf {

class BlockRunner {
 public:
  explicit BlockRunner(Backbone& backbone) : backbone_(backbone) {}

  Backbone& backbone() { return backbone_; }
  // x (B, C, H, W) -> tokens (B, T, D). Not a block: not counted.
  torch::Tensor embed(const torch::Tensor& x) { return backbone_.embed(x); }
  // t (B,) -> the conditioning of the blocks and the head. Not counted.
  Conditioning condition(const torch::Tensor& t, const ConditionInputs& inputs) { return backbone_.condition(t, inputs); }
  // Block j of the backbone: h (B, T, D) -> (B, T, D). Counted.
  torch::Tensor block(int64_t j, const torch::Tensor& h, const Conditioning& cond) {
    ++block_forwards_;
    return backbone_.block(j, h, cond);
  }
  // A block module outside the backbone (ILF's feedback block F), of the backbone's block type, on
  // h (B, T, D) under `cond` -> (B, T, D). Counted as one block forward.
  torch::Tensor extra_block(TransformerBlock& block, const torch::Tensor& h, const Conditioning& cond) {
    ++block_forwards_;
    return block.forward(h, cond);
  }
  // Final layer and unpatchify: h (B, T, D) -> (B, out_channels, height, width). Not counted.
  torch::Tensor head(const torch::Tensor& h, const Conditioning& cond, int64_t height, int64_t width) {
    return backbone_.head(h, cond, height, width);
  }
  // The plain forward, every block through block(): x (B, C, H, W), t (B,) -> (B, out_channels, H, W).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs);

  // Block forwards run through this runner so far.
  int64_t block_forwards() const { return block_forwards_; }

 private:
  Backbone& backbone_;
  int64_t block_forwards_ = 0;
};

}  // namespace ilf
