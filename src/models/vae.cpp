// TorchScript VAE decoder / encoder with the latent scale factor (see include/ilf/models/vae.h).
#include "ilf/models/vae.h"

#include <sstream>

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/text/text_encoder.h"
#include "ilf/util/checks.h"

namespace ilf {

namespace {

torch::jit::script::Module load_module(const std::string& path, const std::string& what, const torch::Device& device) {
  require_regular_file(path, what);
  try {
    torch::jit::script::Module m = torch::jit::load(path, device);
    m.eval();
    require_finite_module(m, path);
    return m;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(path + ": cannot load the TorchScript " + what + " (" + short_torch_error(e) + ")");
  }
}

// The module's own floating type (an export may be half precision): its first parameter's, else float32.
torch::Dtype module_dtype(const torch::jit::script::Module& m) {
  for (const auto& p : m.parameters()) return p.scalar_type();
  return torch::kFloat32;
}

}  // namespace

void check_latent_scale(double scale, const std::string& what) {
  if (!(scale >= kMinLatentScale && scale <= kMaxLatentScale)) {
    std::ostringstream got;
    got << scale;
    throw Error(what + " must be a number from 1e-4 to 1e4 (got " + got.str() + ")");
  }
}

TorchScriptVae::TorchScriptVae(const std::string& decoder_path, const std::string& encoder_path, double scale_factor,
                               const torch::Device& device, int64_t downsampling)
    : decoder_path_(decoder_path),
      encoder_path_(encoder_path),
      scale_factor_(scale_factor),
      downsampling_(downsampling),
      device_(device) {
  const std::string& name = decoder_path.empty() ? encoder_path : decoder_path;
  check_latent_scale(scale_factor, name + ": the VAE latent scale factor");
  if (decoder_path.empty() && encoder_path.empty()) throw Error("a VAE needs a decoder or an encoder file");
  if (!decoder_path.empty()) {
    decoder_ = load_module(decoder_path, "VAE decoder", device);
    has_decoder_ = true;
  }
  if (!encoder_path.empty()) {
    encoder_ = load_module(encoder_path, "VAE encoder", device);
    has_encoder_ = true;
  }
}

torch::Tensor TorchScriptVae::decode(const torch::Tensor& latents) {
  if (!has_decoder_) throw Error(encoder_path_ + ": this VAE has no decoder (set the decoder file)");
  torch::NoGradGuard no_grad;
  const torch::Dtype dtype = module_dtype(decoder_);
  torch::Tensor images;
  try {
    images = first_output_tensor(decoder_.forward({(latents / scale_factor_).to(device_, dtype)}), decoder_path_);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(decoder_path_ + ": the VAE decoder failed on latents of shape " + c10::str(latents.sizes()) +
                " (expected a TorchScript VAE decoder: latents (B, C, h, w) -> images (B, 3, H, W); " + short_torch_error(e) +
                ")");
  }
  if (images.dim() != 4 || images.size(0) != latents.size(0) || (images.size(1) != 3 && images.size(1) != 1))
    throw Error(decoder_path_ + ": expected images (B, 3, H, W) (or (B, 1, H, W), grey) from the VAE decoder, got " +
                c10::str(images.sizes()));
  images = images.to(torch::kFloat32);
  require_finite(images, decoder_path_ + ": the VAE decoder's images");
  return images.clamp(-1, 1);
}

torch::Tensor TorchScriptVae::encode_unscaled(const torch::Tensor& images) {
  if (!has_encoder_) throw Error(decoder_path_ + ": this VAE has no encoder (set the encoder file)");  // decoder set
  torch::NoGradGuard no_grad;
  const torch::Dtype dtype = module_dtype(encoder_);
  torch::Tensor latents;
  try {
    latents = first_output_tensor(encoder_.forward({images.to(device_, dtype)}), encoder_path_);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(encoder_path_ + ": the VAE encoder failed on images of shape " + c10::str(images.sizes()) +
                " (expected a TorchScript VAE encoder: images (B, 3, H, W) -> latents (B, C, h, w); " + short_torch_error(e) +
                ")");
  }
  latents = latents.to(torch::kFloat32);
  require_finite(latents, encoder_path_ + ": the VAE encoder's latents");
  return latents;
}

torch::Tensor TorchScriptVae::encode(const torch::Tensor& images) {
  torch::Tensor latents = encode_unscaled(images) * scale_factor_;
  require_finite(latents, encoder_path_ + ": the scaled latents");
  return latents;
}

torch::Tensor TorchScriptVae::encode_sample(const torch::Tensor& images, torch::Generator& generator) {
  const torch::Tensor moments = encode_unscaled(images).to(torch::kCPU);  // (B, 2C, h, w)
  if (moments.size(1) % 2 != 0)
    throw Error(encoder_path_ + ": the VAE encoder returns " + std::to_string(moments.size(1)) +
                " channels; moments need an even number ([mean, logvar])");
  const auto chunks = moments.chunk(2, 1);  // mean, logvar
  torch::Tensor z = chunks[0] + (0.5 * chunks[1].clamp(-30, 20)).exp() * torch::randn(chunks[0].sizes(), generator);
  z = z * scale_factor_;
  require_finite(z, encoder_path_ + ": the sampled latents");
  return z;
}

}  // namespace ilf
