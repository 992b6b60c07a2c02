// The block stack and head shared by DiT and PixArt (see include/ilf/models/patch_transformer.h).
#include "ilf/models/patch_transformer.h"

namespace ilf {

void PatchTransformerBackbone::register_blocks() {
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < depth(); ++i) {
    BlockPtr block = new_block();
    blocks->push_back(block);
    block_list_.push_back(std::move(block));
  }
}

torch::Tensor PatchTransformerBackbone::block(int64_t j, const torch::Tensor& h, const Conditioning& cond) {
  TORCH_CHECK(j >= 0 && j < depth(), name_, "::block: index ", j, " outside [0, ", depth(), ")");
  return block_list_[j]->forward(h, cond);
}

torch::Tensor PatchTransformerBackbone::head(const torch::Tensor& h, const Conditioning& cond, int64_t height, int64_t width) {
  const int64_t p = patch_size();
  return unpatchify(final_tokens(h, cond), height / p, width / p, p, out_channels());
}

BlockPtr PatchTransformerBackbone::make_block() const {
  BlockPtr block = new_block();
  const torch::Tensor& like = x_embedder->proj->weight;
  block->to(like.device(), like.scalar_type());
  return block;
}

BlockPtr PatchTransformerBackbone::block_module(int64_t j) const {
  TORCH_CHECK(j >= 0 && j < depth(), name_, "::block_module: index ", j, " outside [0, ", depth(), ")");
  return block_list_[j];
}

torch::Tensor PatchTransformerBackbone::embed_timestep(const torch::Tensor& t) { return t_embedder(t); }

}  // namespace ilf
