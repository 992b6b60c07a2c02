// Text-to-image model folders: everything `ilf_sample --prompt` needs in one folder, described by its
// model.json (written by scripts/export_pixart_model_folder.py):
//   {"format": "ilf.text_to_image_model",
//    "family": "pixart_alpha" | "pixart_sigma",
//    "resolution": 512,                 image size in pixels the backbone was trained for (8 x model.input_size)
//    "latent_scale": 0.18215,           VAE latent scale factor (alpha: SD VAE 0.18215, sigma: SDXL VAE 0.13025;
//                                       with a folder's own VAE (vae_downsampling set): that VAE's)
//    "vae_downsampling": 4,             optional: pixels per latent of the folder's own VAE (default 8, the SD VAEs')
//    "image_channels": 1,               optional: channels of the images the VAE makes (default 3)
//    "max_caption_length": 120,         T5 tokens per caption (alpha 120, sigma 300)
//    "model": {...},                    the backbone settings, as in a run config's "model" section
//    "backbone": "backbone.safetensors",           backbone weights (any format read_weights reads)
//    "feedback": "feedback.safetensors",           optional: a trained ILF feedback module
//    "text_encoder": "text_encoder.pt",            TorchScript T5 encoder
//    "tokenizer": "spiece.model",                  SentencePiece model of the text encoder
//    "tokenizer_check": "tokenizer_check.json",    optional: prompts with the ids Hugging Face's T5Tokenizer gives
//                                                  them, {"max_length": L, "prompts": [...], "input_ids": [[...]]}
//    "device": "cuda",                             optional: the device the TorchScript modules were traced for
//                                                  (they run there: tracing records the device of some tensors)
//    "vae_decoder": "vae_decoder.pt",              TorchScript VAE decoder
//    "vae_encoder": "vae_encoder.pt"}              optional: TorchScript VAE encoder (data preparation)
// File names are relative to the folder (or absolute). A run config points at a folder with
// "model": {"folder": "..."} (or ilf_sample --model-folder); the folder then completes the config.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ilf/io/config.h"

namespace ilf {

struct ModelFolder {
  std::string path;      // the folder
  std::string manifest;  // its model.json
  std::string family;    // "pixart_alpha" or "pixart_sigma"
  int64_t resolution = 0;
  double latent_scale = 0;
  int64_t max_caption_length = 0;
  bool custom_vae = false;       // "vae_downsampling" given: the folder's own VAE, not the family's
  int64_t vae_downsampling = 8;  // pixels per latent along each side
  int64_t image_channels = 3;
  Json model = Json::object();  // backbone settings
  // Files, resolved against the folder; "" when an optional one is absent.
  std::string backbone, feedback, text_encoder, tokenizer, tokenizer_check, vae_decoder, vae_encoder;
  std::string device;  // "" when model.json does not say
  // "checksums": file entry ("backbone", "text_encoder", ...) -> "crc32:<8 hex digits>" of the file's
  // bytes (zlib's CRC-32: finds corruption such as flipped bytes, not deliberate tampering), recorded
  // when the folder was made (scripts/export_pixart_model_folder.py, scripts/fashion_t2i/write_model_json.py).
  std::map<std::string, std::string> checksums;
  std::map<std::string, std::string> files;  // file entry -> its resolved path (the entries present)
};

// Verifies every file of `folder` that has a recorded checksum: a mismatch is an ilf::Error naming the
// file and model.json. A folder without "checksums" loads with a one-line warning. Reads each file once
// (CRC-32 runs at several GB/s; on a folder of 10 GB it takes seconds). Done once per folder and
// process; load_text_to_image_model calls it.
void verify_model_folder_files(const ModelFolder& folder);

// The "crc32:<8 hex digits>" of a file's bytes (what "checksums" records). Errors name the file.
std::string file_crc32(const std::string& path);

// The facts of a text-to-image family: its latent scale factor, caption length and backbone variants.
struct TextToImageFamily {
  std::string name;  // "pixart_alpha", "pixart_sigma"
  double latent_scale;
  int64_t max_caption_length;
  std::vector<std::string> variants;  // PixArtConfig::variant values of the family
};
// Throws ilf::Error listing the known families for an unknown name.
const TextToImageFamily& text_to_image_family(const std::string& name);
// The family of a PixArt variant: alpha / alpha_ms -> pixart_alpha, sigma -> pixart_sigma.
const TextToImageFamily& text_to_image_family_of_variant(const std::string& variant);

// Reads and checks `folder`/model.json before anything is loaded: every key known and of the right
// type, the family known, latent_scale the family's, model.variant one of the family's,
// resolution = 8 x model.input_size (when given), and every named file present. All problems are
// reported in one ilf::Error naming model.json.
ModelFolder read_model_folder(const std::string& folder);

// If `folder` is non-empty, or `config` names one at "model.folder" (resolved like every config path:
// as given, else beside the config file `config_source`), reads it and completes `config` with it:
//   weights <- backbone; ilf.feedback_weights <- feedback; model.* <- model.* and
//   model.model_max_length <- max_caption_length; text.encoder, text.tokenizer, text.max_length,
//   text.encoder_device <- device; vae.decoder, vae.encoder, vae.scale_factor <- latent_scale.
// File paths already in the config win (so --weights / --feedback can replace a folder's file); any
// other setting already in the config must equal the folder's, else ilf::Error names both. "model.folder"
// is removed from `config`. Returns the folder read, or nullopt when there is none.
// The model folder apply_model_folder would read: `folder` when non-empty, else the config's
// "model.folder" resolved like every config path; "" when there is none. Reads no file.
std::string model_folder_path(const Json& config, const std::string& config_source, const std::string& folder = "");

std::optional<ModelFolder> apply_model_folder(Json& config, const std::string& config_source, const std::string& folder = "");

}  // namespace ilf
