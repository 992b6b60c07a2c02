// ImageReward (the image-reward package's reward model): a BLIP ViT image encoder, a BERT text encoder
// with cross-attention to the image, an MLP head and the package's fixed mean / std normalisation,
// loaded from the ImageReward.pt state dict the package downloads, with BERT WordPiece tokenisation of
// the prompt (vocab.txt, lower-cased, padded / truncated to 35 tokens) done here in C++.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace ilf {

class ImageRewardModel;  // defined in src/eval/image_reward.cpp
using ImageRewardModelPtr = std::shared_ptr<ImageRewardModel>;

struct ImageRewardFiles {
  std::string weights;     // ImageReward.pt (the state dict)
  std::string vocab;       // BERT vocab.txt (bert-base-uncased's)
  std::string med_config;  // med_config.json (the BERT configuration); "" = the package's defaults
};

// Errors name the file and the tensor or key that is missing or does not fit.
ImageRewardModelPtr load_image_reward(const ImageRewardFiles& files, const torch::Device& device);

// Per-image rewards (N,) float64 of images uint8 (N, 3, H, W) against their prompts, as
// ImageReward.score(prompt, image) gives them.
torch::Tensor image_reward_scores(ImageRewardModel& model, const torch::Tensor& images,
                                  const std::vector<std::string>& prompts);

}  // namespace ilf
