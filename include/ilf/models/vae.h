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
// The latent scale factors of the VAEs the official models use (the one place they are written):
// Stable Diffusion's VAE (DiT, PixArt-alpha) and SDXL's (PixArt-Sigma).
constexpr double kSdVaeLatentScale = 0.18215;
constexpr double kSdxlVaeLatentScale = 0.13025;
// The accepted range of a latent scale factor (config "vae.scale_factor", a model folder's
// "latent_scale", ilf_prepare_data --latent-scale): far around every published VAE's (0.13 .. 1.5);
// outside it latents overflow or vanish (1e-300 gave black images, 1e-320 all-zero latents).
constexpr double kMinLatentScale = 1e-4;
constexpr double kMaxLatentScale = 1e4;

// Throws ilf::Error "<what> must be a number from 1e-4 to 1e4 (got ...)" unless kMinLatentScale <=
// scale <= kMaxLatentScale.
void check_latent_scale(double scale, const std::string& what);

class TorchScriptVae {
 public:
  // Loads the decoder and the encoder ("" = none; at least one) on `device`. Errors name the file.
  TorchScriptVae(const std::string& decoder_path, const std::string& encoder_path, double scale_factor,
                 const torch::Device& device, int64_t downsampling = kVaeDownsampling);

  // latents (B, C, h, w) as the sampler produces them -> images (B, 1 or 3, d*h, d*w) in [-1, 1] (clamped),
  // float32, d = downsampling().
  torch::Tensor decode(const torch::Tensor& latents);
  // images (B, 3, H, W) in [-1, 1] -> latents (B, C, H/8, W/8) * scale_factor. The encoder returns the
  // latent mean (or a tuple whose first tensor it is).
  torch::Tensor encode(const torch::Tensor& images);
  // The same for an encoder that returns the moments (B, 2C, h, w) = [mean, logvar] of the latent
  // posterior: a sample mean + exp(logvar / 2) * noise (noise from `generator`, on the CPU), scaled.
  torch::Tensor encode_sample(const torch::Tensor& images, torch::Generator& generator);

  bool has_encoder() const { return has_encoder_; }
  bool has_decoder() const { return has_decoder_; }
  double scale_factor() const { return scale_factor_; }
  int64_t downsampling() const { return downsampling_; }  // pixels per latent along each side
  const std::string& decoder_path() const { return decoder_path_; }

 private:
  torch::Tensor encode_unscaled(const torch::Tensor& images);  // the encoder's output, float32

  torch::jit::script::Module decoder_, encoder_;
  std::string decoder_path_, encoder_path_;
  double scale_factor_;
  int64_t downsampling_;
  torch::Device device_;
  bool has_encoder_ = false, has_decoder_ = false;
};

}  // namespace ilf
