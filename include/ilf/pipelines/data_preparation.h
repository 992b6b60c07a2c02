// Data preparation, what ilf_prepare_data runs: the safetensors shards that `ilf_train` reads
// ("data.kind": "shards") from a folder of images, with a TorchScript VAE encoder, and either class
// labels (one sub-folder per class) or captions (a .txt beside each image) encoded by a TorchScript
// text encoder, as for a real DiT / PixArt data set.
//
// Images are read as regular files only (PNG chunks have their CRCs checked, which stb_image skips),
// their size is checked from the header against max_image_pixels before decoding, then they are
// decoded with stb_image (RGB, or grey with channels = 1), resized so the shorter side
// equals `resolution` and centre-cropped, then scaled to [-1, 1] and encoded in batches: latents =
// encoder(images) * latent_scale. The encoder returns the latent mean (B, C, h, w), or with
// encoder_output "moments" the (B, 2C, h, w) [mean, logvar] of the latent distribution, sampled with
// `seed`. Captions are preprocessed and tokenized as the sampling pipeline does it (ilf::TextEncoder);
// the empty prompt's features go to null_caption.safetensors beside the shards (the null caption for
// condition dropout of models without a learned one).
//
// The image order is shuffled (`seed`) before it is cut into shards of `shard_size`, so every shard
// mixes classes / captions. Each shard is written atomically; a rerun skips finished shards.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "ilf/training/datasets.h"

namespace ilf {

// The default limit on an image's pixels: 8192 x 8192 = 67,108,864 (an RGB image of 192 MiB decoded).
constexpr int64_t kDefaultMaxImagePixels = int64_t{8192} * 8192;

struct DataPreparationOptions {
  std::string images, out;              // the image folder (recursive) and the shard folder
  std::string vae_encoder;              // TorchScript VAE encoder
  std::string encoder_output = "mean";  // "mean" or "moments"
  double latent_scale = 0.18215;        // the VAE's latent scale factor
  bool labels_from_folders = false;     // class = index of the first-level sub-folder (sorted)
  bool captions = false;                // caption = the .txt file beside each image
  std::string text_encoder, tokenizer;  // with captions: TorchScript T5 encoder and its spiece.model
  int64_t max_tokens = 120;             // caption length L
  bool micro_conditions = false;        // store image_hw and aspect_ratio (PixArt-alpha MS)
  int64_t channels = 3;                 // 3: RGB; 1: grey
  int64_t resolution = 256;             // image side after resize + centre crop
  int64_t shard_size = 1024, batch = 16;
  std::string dtype = "f16";    // stored dtype: f16, bf16 or f32
  std::string device = "auto";  // "auto": CUDA when the build and machine have it
  uint64_t seed = 0;
  // The most pixels an image may have, in the file (width x height, read from its header before
  // decoding) and after the resize to `resolution` (an extreme aspect ratio such as 1 x 1,000,000
  // becomes huge): larger images are refused naming the file (ilf_prepare_data --max-image-pixels).
  int64_t max_image_pixels = kDefaultMaxImagePixels;
};

// Writes the shards (and classes.json or null_caption.safetensors). Errors name the file or option.
void prepare_shards(const DataPreparationOptions& options);

// Writes one prepared shard to `path` (training/datasets.h write_shard, with `metadata`), what
// prepare_shards does for each: `latents` already in the stored dtype, of the images first_index,
// first_index + 1, ..., the first of them read from `first_image`. NaN or Inf latents (an encoder or
// image that overflows; f16 above 65504) or caption features are refused before anything is written:
// ilf::Error "<path>: latents of images <first> .. <last>: holds N NaN or Inf values of M (nothing
// written; first image <file>)", or "<path>: caption features: ...".
void write_prepared_shard(const std::string& path, const torch::Tensor& latents, const ConditionInputs& condition,
                          const std::map<std::string, std::string>& metadata, int64_t first_index,
                          const std::string& first_image);

}  // namespace ilf
