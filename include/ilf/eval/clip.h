// CLIP (the ViT image and text towers of a Hugging Face CLIPModel folder: config.json +
// model.safetensors, plus the tokenizer files) and the two metrics built on it:
//   - CLIP score as torchmetrics' CLIPScore defines it: 100 x cosine(image embedding, text embedding),
//     clamped at 0; the metric is the mean over images;
//   - CLIP-IQA as torchmetrics' CLIPImageQualityAssessment defines it with a CLIP folder as its model:
//     for each prompt pair the softmax over (100 x cosine to the positive, to the negative) prompt, the
//     positive's probability reported.
// The image preprocessing is the reference's (CLIPProcessor as torchmetrics calls it), done here in C++.
//
// References and what "as torchmetrics" means here (torchmetrics 1.9 with transformers 5):
//   - CLIPProcessor's image processor is the torchvision one: the shortest side resized to
//     preprocessor_config.json's size (224) with torchvision's antialiased bicubic, the centre crop
//     (224 x 224), then (x - 255 mean) / (255 std) in float32. CLIPScore hands it the uint8 images, and
//     torch resizes uint8 in 16-bit fixed point with rounding to uint8 (reproduced here bit for bit);
//     CLIPImageQualityAssessment first divides the images by data_range, so they reach the processor as
//     float32 and are resized in float32 without rounding: clip_iqa_scores follows that path with
//     data_range = 1 (uint8 values 0..255 as floats; with data_range = 255 the processor would rescale by
//     1/255 a second time).
//   - Text: the CLIPTokenizer of the folder (clip_tokenizer.h), padded to the longest prompt, then cut
//     to max_position_embeddings (77) by torchmetrics, so a long prompt loses its end token; the text
//     tower pools as transformers does: at the argmax of the ids when config's eos_token_id is 2 (the
//     openai folders), else at the first eos_token_id (position 0 when a cut prompt has none).
//   - Per image: clip_scores(i) is CLIPScore on image i alone (max(100 cos, 0)). torchmetrics' value for a
//     batch is max(mean of the unclamped scores, 0) (clip_scores_unclamped), the same unless some cosine
//     is negative.
//   - CLIP-IQA: torchmetrics' default model "clip_iqa" (piq's ResNet-50 CLIP with its own weights) is not
//     supported; only CLIP folders (model_name_or_path = a CLIPModel, e.g. openai/clip-vit-large-patch14).
//     The four columns use torchmetrics' prompts "quality" ("Good photo." / "Bad photo."), "noisiness"
//     ("Clean photo." / "Noisy photo."), "colorfullness" ("Colorful photo." / "Dull photo.") and "natural"
//     ("Natural photo." / "Synthetic photo."); each column is the probability of the first prompt.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace ilf {

class ClipModel;  // defined in src/eval/clip.cpp
using ClipModelPtr = std::shared_ptr<ClipModel>;
class ClipTokenizer;

// One model is used by one thread at a time (clip_iqa_scores caches the prompts' embeddings in it).
// Loads `folder` (config.json, model.safetensors, and vocab.json + merges.txt for the tokenizer;
// preprocessor_config.json if present, else CLIP's 224 / OpenAI mean and std) onto `device`. Errors name
// the folder and the file or key that is missing or does not fit.
ClipModelPtr load_clip_model(const std::string& folder, const torch::Device& device);

// images uint8 (N, 3, H, W) (eval/images.h) -> (N, D) float32 projected image embeddings (not normalised),
// with CLIPScore's preprocessing (clip_pixel_values).
torch::Tensor clip_image_embeddings(ClipModel& model, const torch::Tensor& images);
// prompts -> (N, D) float32 projected text embeddings (not normalised), 77-token truncation.
torch::Tensor clip_text_embeddings(ClipModel& model, const std::vector<std::string>& prompts);

// Per-image CLIP scores (N,) float64 of images against their prompts (prompts.size() == N).
torch::Tensor clip_scores(ClipModel& model, const torch::Tensor& images, const std::vector<std::string>& prompts);
// The same before the clamp at 0: 100 x cosine, (N,) float64.
torch::Tensor clip_scores_unclamped(ClipModel& model, const torch::Tensor& images, const std::vector<std::string>& prompts);

// CLIP-IQA's four columns, per image: (N, 4) float64, columns kClipIqaColumns.
torch::Tensor clip_iqa_scores(ClipModel& model, const torch::Tensor& images);
inline const char* const kClipIqaColumns[4] = {"quality", "noisiness", "colorfulness", "naturalness"};
// The (positive, negative) prompt of each column, torchmetrics' _PROMPTS entries.
inline const char* const kClipIqaPrompts[4][2] = {{"Good photo.", "Bad photo."},
                                                  {"Clean photo.", "Noisy photo."},
                                                  {"Colorful photo.", "Dull photo."},
                                                  {"Natural photo.", "Synthetic photo."}};

// The pieces, for tests and tools:
// CLIPScore's preprocessing: uint8 (N, 3, H, W) -> (N, 3, S, S) float32 pixel values (S = crop size).
torch::Tensor clip_pixel_values(const ClipModel& model, const torch::Tensor& images);
// CLIP-IQA's (the images as float32 through the processor): uint8 (N, 3, H, W) -> (N, 3, S, S) float32.
torch::Tensor clip_pixel_values_float(const ClipModel& model, const torch::Tensor& images);
// pixel values (N, 3, S, S) float32 -> (N, D) projected image embeddings.
torch::Tensor clip_image_embeddings_from_pixels(ClipModel& model, const torch::Tensor& pixel_values);
// The token ids the text tower sees: (N, L) int64, L <= max_position_embeddings.
torch::Tensor clip_tokens(const ClipModel& model, const std::vector<std::string>& prompts);
const ClipTokenizer& clip_tokenizer(const ClipModel& model);

// torch's uint8 antialiased bicubic resize (torchvision.transforms.v2.functional.resize of a uint8
// tensor on the CPU): uint8 (C, H, W) -> uint8 (C, height, width).
torch::Tensor clip_resize_bicubic_uint8(const torch::Tensor& image, int64_t height, int64_t width);

}  // namespace ilf
