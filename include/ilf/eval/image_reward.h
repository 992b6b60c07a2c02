// ImageReward (the image-reward package's reward model): a BLIP ViT image encoder, a BERT text encoder
// with cross-attention to the image, an MLP head and the package's fixed mean / std normalisation,
// loaded from the ImageReward.pt state dict the package downloads (converted to safetensors by
// scripts/convert_image_reward.py), with BERT WordPiece tokenisation of
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
  // The package's ImageReward.pt state dict as scripts/convert_image_reward.py converts it to
  // safetensors (LibTorch reads the original's pickled OrderedDict as None; a torch.save file of a plain
  // dict of tensors is read as it is). The same tensor names either way.
  std::string weights;
  std::string vocab;       // BERT vocab.txt (bert-base-uncased's)
  std::string med_config;  // med_config.json (the BERT configuration); "" = the package's defaults
};

// Errors name the file and the tensor or key that is missing or does not fit.
ImageRewardModelPtr load_image_reward(const ImageRewardFiles& files, const torch::Device& device);

// Per-image rewards (N,) float64 of images uint8 (N, 3, H, W) against their prompts, as
// ImageReward.score(prompt, image) gives them.
torch::Tensor image_reward_scores(ImageRewardModel& model, const torch::Tensor& images, const std::vector<std::string>& prompts);

// What the parity check and the tests compare with the package, step by step.
struct ImageRewardOutputs {
  torch::Tensor input_ids, attention_mask;  // (N, 35) int64: the prompts' BERT tokens
  torch::Tensor image_embeds;               // (N, 1 + (224 / patch)^2, D) float32: the ViT's output
  torch::Tensor text_features;              // (N, C) float32: the text encoder's [CLS] state
  torch::Tensor rewards;                    // (N,) float64
};
ImageRewardOutputs image_reward_forward(ImageRewardModel& model, const torch::Tensor& images,
                                        const std::vector<std::string>& prompts);

// The package's preprocessing of uint8 (N, 3, H, W) images: Resize(224, bicubic) as torchvision does it
// on a PIL image (short side to 224), CenterCrop(224), ToTensor, Normalize -> float32 (N, 3, 224, 224).
torch::Tensor image_reward_pixels(const torch::Tensor& images);

class BertTokenizer;
const BertTokenizer& image_reward_tokenizer(const ImageRewardModel& model);

}  // namespace ilf
