// Classifier-free guidance on a batched [cond; uncond] model output, as the official
// forward_with_cfg does it: eps = u + s * (c - u) on the first `guided_channels` channels, written to
// both halves of the batch; the other channels (learned sigma, and with the official 3-channel
// slicing also the last latent channel) pass through unchanged, row by row.
#pragma once
#include <torch/torch.h>

namespace ilf {

// model_out (2B, C, H, W) = [cond; uncond] -> (2B, C, H, W) = [guided; guided] on channels
// [0, guided_channels), model_out elsewhere. guided_channels = in_channels guides every eps channel
// (the default reading); 3 reproduces the official DiT / PixArt forward_with_cfg.
torch::Tensor classifier_free_guidance(const torch::Tensor& model_out, double scale, int64_t guided_channels);

}  // namespace ilf
