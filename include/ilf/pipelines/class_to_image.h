// Class-to-image generation with a class-conditional backbone (DiT): the model of a run config, loaded
// once (backbone, acceleration method with its feedback module, solver, optional VAE), and generation
// of a batch of class labels from one seed. ilf_sample, ilf_eval and the benchmark use it.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "ilf/config/run_config.h"
#include "ilf/models/backbone.h"
#include "ilf/models/vae.h"
#include "ilf/pipelines/loading.h"
#include "ilf/sampling/sampler.h"

namespace ilf {

struct ClassToImageModel {
  BackbonePtr backbone;                 // class-conditional
  SamplingSetup sampling;               // method (+ feedback module) and solver
  SamplingOptions options;              // steps, guidance
  std::shared_ptr<TorchScriptVae> vae;  // latent models only ("vae.decoder"); null for pixel-space models
  torch::Device device{torch::kCPU};

  int64_t num_classes() const { return backbone->num_classes(); }
};

// Loads the model of `config` on `device`. Throws ilf::Error when the backbone is not class-conditional
// or makes latents (not 1 or 3 channels) without "vae.decoder".
ClassToImageModel load_class_to_image_model(const RunConfig& config, const torch::Device& device);

struct ClassToImageResult {
  torch::Tensor images;     // (B, C, H, W) float32 on the model's device: samples, decoded when there is a VAE
  SamplingResult sampling;  // final samples (latents for latent models), plan, block forwards
};

// The initial noise of `batch` images: randn(batch, C, S, S) of one CPU generator seeded with `seed` (the
// same noise for the same seed and batch size on every device), on the model's device.
torch::Tensor initial_noise(const ClassToImageModel& model, int64_t batch, uint64_t seed);

// One image per label (each in [0, num_classes)), from initial_noise(model, labels.size(), seed).
ClassToImageResult generate(ClassToImageModel& model, const std::vector<int64_t>& labels, uint64_t seed,
                            const ProgressCallback& progress = nullptr);
// The same from given initial noise x_T (B, C, S, S) on the model's device, B = labels.size() (the image
// server joins requests, each with the noise of its own seed).
ClassToImageResult generate(ClassToImageModel& model, const std::vector<int64_t>& labels, const torch::Tensor& x_T,
                            const ProgressCallback& progress = nullptr);

}  // namespace ilf
