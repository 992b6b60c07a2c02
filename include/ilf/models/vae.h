// The latent-space VAE of the text-to-image models as TorchScript modules (exported by
// scripts/export_pixart_model_folder.py): the decoder turns the sampler's latents into images, the
// encoder (used by data preparation) images into latents. Latents are scaled by the family's factor
// (SD VAE 0.18215 for PixArt-alpha, SDXL VAE 0.13025 for PixArt-Sigma): decode(z) = decoder(z / scale),
// encode(x) = encoder(x) * scale.
#pragma once
#include <torch/script.h>
#include <torch/torch.h>

#include <string>

namespace ilf {

// Pixels per latent along each side: 8 for the SD and SDXL VAEs of PixArt-alpha and PixArt-Sigma.
constexpr int64_t kVaeDownsampling = 8;

class TorchScriptVae {
 public:
  // Loads the decoder (required) and the encoder ("" = none) on `device`. Errors name the file.
  TorchScriptVae(const std::string& decoder_path, const std::string& encoder_path, double scale_factor,
                 const torch::Device& device);

  // latents (B, C, h, w) as the sampler produces them -> images (B, 3, 8h, 8w) in [-1, 1] (clamped), float32.
  torch::Tensor decode(const torch::Tensor& latents);
  // images (B, 3, H, W) in [-1, 1] -> latents (B, C, H/8, W/8) * scale_factor. The encoder returns the
  // latent mean (or a tuple whose first tensor it is).
  torch::Tensor encode(const torch::Tensor& images);

  bool has_encoder() const { return has_encoder_; }
  double scale_factor() const { return scale_factor_; }
  const std::string& decoder_path() const { return decoder_path_; }

 private:
  torch::jit::script::Module decoder_, encoder_;
  std::string decoder_path_, encoder_path_;
  double scale_factor_;
  torch::Device device_;
  bool has_encoder_ = false;
};

}  // namespace ilf
