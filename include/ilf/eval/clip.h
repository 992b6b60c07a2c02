// CLIP (the ViT image and text towers of a Hugging Face CLIPModel folder: config.json +
// model.safetensors, plus the tokenizer files) and the two metrics built on it:
//   - CLIP score as torchmetrics' CLIPScore defines it: 100 x cosine(image embedding, text embedding),
//     clamped at 0; the metric is the mean over images;
//   - CLIP-IQA as torchmetrics' CLIPImageQualityAssessment defines it with a CLIP folder as its model:
//     for each prompt pair the softmax over (100 x cosine to the positive, to the negative) prompt, the
//     positive's probability reported.
// The image preprocessing is the reference's (CLIPProcessor as torchmetrics calls it), done here in C++.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace ilf {

class ClipModel;  // defined in src/eval/clip.cpp
using ClipModelPtr = std::shared_ptr<ClipModel>;

// Loads `folder` (config.json, model.safetensors, and vocab.json + merges.txt for the tokenizer) onto
// `device`. Errors name the folder and the file or key that is missing or does not fit.
ClipModelPtr load_clip_model(const std::string& folder, const torch::Device& device);

// images uint8 (N, 3, H, W) (eval/images.h) -> (N, D) float32 projected image embeddings (not normalised).
torch::Tensor clip_image_embeddings(ClipModel& model, const torch::Tensor& images);
// prompts -> (N, D) float32 projected text embeddings (not normalised), 77-token truncation.
torch::Tensor clip_text_embeddings(ClipModel& model, const std::vector<std::string>& prompts);

// Per-image CLIP scores (N,) float64 of images against their prompts (prompts.size() == N).
torch::Tensor clip_scores(ClipModel& model, const torch::Tensor& images, const std::vector<std::string>& prompts);

// CLIP-IQA's four columns, per image: (N, 4) float64, columns kClipIqaColumns.
torch::Tensor clip_iqa_scores(ClipModel& model, const torch::Tensor& images);
inline const char* const kClipIqaColumns[4] = {"quality", "noisiness", "colorfulness", "naturalness"};

}  // namespace ilf
