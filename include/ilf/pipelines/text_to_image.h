// Text-to-image sampling with PixArt-alpha and PixArt-Sigma, as the diffusers PixArtAlphaPipeline /
// PixArtSigmaPipeline do it, through the ILF sampler (any acceleration method):
//   prompts -> T5 caption embeddings (TextEncoder) -> the sampler from seeded noise with classifier-free
//   guidance -> VAE decoder -> images, with PixArt's aspect-ratio bins for the multi-scale models.
// The null (unconditional) caption for guidance:
//   - an explicit negative prompt: its T5 embedding (as diffusers does for both families);
//   - otherwise PixArt-alpha: the backbone's learned y_embedding, with the SAME mask as each image's own
//     caption (as the official PixArt inference and training do: the null caption keeps the caption's
//     length); weights without y_embedding (diffusers layout) fall back to the embedding of "";
//   - otherwise PixArt-Sigma: the T5 embedding of the empty prompt "" (its own mask: </s> only).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ilf/config/run_config.h"
#include "ilf/models/backbone.h"
#include "ilf/pipelines/loading.h"
#include "ilf/pipelines/model_folder.h"
#include "ilf/models/vae.h"
#include "ilf/sampling/sampler.h"
#include "ilf/text/text_encoder.h"

namespace ilf {

struct ImageSize {
  int64_t height = 0;
  int64_t width = 0;
  bool operator==(const ImageSize& o) const { return height == o.height && width == o.width; }
  bool operator!=(const ImageSize& o) const { return !(*this == o); }
};

// PixArt's aspect-ratio bins: the image sizes the multi-scale models were trained on, keyed by
// height / width (the values of diffusers' ASPECT_RATIO_{256,512,1024,2048}_BIN).
struct AspectRatioBin {
  double ratio;  // height / width
  int64_t height;
  int64_t width;
};
// The bins of a model trained at `resolution` pixels (256, 512, 1024 or 2048); empty for other resolutions.
const std::vector<AspectRatioBin>& aspect_ratio_bins(int64_t resolution);
// The bin whose ratio is nearest height / width (the first of equally near ones). `bins` must not be empty.
ImageSize nearest_aspect_ratio_bin(int64_t height, int64_t width, const std::vector<AspectRatioBin>& bins);

// images (B, C, h, w) -> (B, C, height, width): bilinearly resized (align_corners false) so that they cover
// height x width, then centre-cropped (diffusers' resize_and_crop_tensor). Unchanged when the size matches.
torch::Tensor resize_and_crop(const torch::Tensor& images, int64_t height, int64_t width);

// Everything a text-to-image run needs, loaded and checked.
struct TextToImageModel {
  std::string family;       // "pixart_alpha" or "pixart_sigma"
  BackbonePtr backbone;     // caption-conditioned (PixArt)
  SamplingSetup sampling;   // the acceleration method, its feedback module (when it uses one) and the solver
  SamplingOptions options;  // steps and guidance
  std::shared_ptr<TextEncoder> text_encoder;
  std::shared_ptr<TorchScriptVae> vae;
  torch::Device device{torch::kCPU};  // where the backbone and the VAE run

  // The image size the backbone was trained for (VAE downsampling x input_size): the default height and width.
  int64_t resolution() const { return backbone->input_size() * vae->downsampling(); }
  // Whether the null caption is the backbone's y_embedding (PixArt-alpha with it in the weights).
  bool uses_y_embedding_null_caption() const { return backbone->has_learned_null_condition(); }
};

// Loads a text-to-image model from a run config (completed by a model folder, or written out in full):
//   "weights", "model" (the backbone), "ilf" (the feedback module, for methods that use it),
//   "sampling" and the method's section,
//   "text" {encoder, tokenizer, max_length, encoder_device (default: `device`), lowercase, cache_size},
//   "vae" {decoder, encoder (not loaded here), scale_factor (default: the family's)}.
// Checks, before any sampling, and reports clearly: missing files (all at once), a backbone that is not
// caption-conditioned, text.max_length against the backbone's caption length, the text encoder's width
// against the backbone's caption_channels (by encoding the empty prompt), the VAE decoder's output (by
// decoding a 2x2 latent), and with `folder` its family and resolution against the backbone. Sets the
// backbone's null caption (see the top of this file).
TextToImageModel load_text_to_image_model(const RunConfig& config, const torch::Device& device,
                                          const ModelFolder* folder = nullptr);

struct TextToImageRequest {
  std::vector<std::string> prompts;  // one image each
  std::vector<uint64_t> seeds;       // per image: its initial noise is randn(1, C, h, w) from a CPU generator with this seed
  std::optional<std::string> negative_prompt;  // unset: the family's null caption
  int64_t height = 0, width = 0;               // pixels; 0 = the model's resolution
  bool resolution_binning = true;              // sample at the nearest aspect-ratio bin, then resize and crop
};

struct TextToImageResult {
  torch::Tensor images;     // (B, 3, height, width) in [-1, 1], float32 on the model's device
  ImageSize requested;      // the size asked for
  ImageSize generated;      // the size sampled (the aspect-ratio bin with binning)
  SamplingResult sampling;  // final latents, plan, block forwards
};

// The size to sample for a requested one (0 = the model's resolution): the nearest aspect-ratio bin for
// the multi-scale variants (alpha_ms, sigma) at the bins' resolutions when `binning`; else the size
// itself. Throws ilf::Error for sizes that are not multiples of 8 x patch_size, and for the fixed-size
// variant "alpha" (the PixArt-alpha 512 / 256 models) at any size but its own.
ImageSize generation_size(const TextToImageModel& model, ImageSize requested, bool binning);

// The caption condition for `prompts` sampled at `size`: T5 features (B, L, C) and mask (B, L), plus the
// size micro-conditions (image_hw = size, aspect_ratio = height / width) for alpha_ms.
ConditionInputs caption_conditions(TextToImageModel& model, const std::vector<std::string>& prompts, ImageSize size);

// The null condition matching `cond` (see the top of this file for which caption it is).
ConditionInputs null_caption_conditions(TextToImageModel& model, const ConditionInputs& cond,
                                        const std::optional<std::string>& negative_prompt);

// Generates one image per prompt with the model's method, solver and options. Guidance runs when
// model.options.guidance_scale != 1.
TextToImageResult generate(TextToImageModel& model, const TextToImageRequest& request,
                           const ProgressCallback& progress = nullptr);

// The longest line a prompts file may hold, in bytes (64 KiB: far above any caption a T5 encoder reads,
// 120 or 300 tokens; a longer line is refused naming the file and line, before anything is read further).
constexpr size_t kMaxPromptLineBytes = 65536;

// The prompts of a prompts file: one per non-empty line (a trailing '\r' is dropped). Errors name the
// file (not a regular file: a fifo or a folder) and the line (longer than kMaxPromptLineBytes).
std::vector<std::string> read_prompts_file(const std::string& path);

}  // namespace ilf
