// Class-to-image generation (see include/ilf/pipelines/class_to_image.h).
#include "ilf/pipelines/class_to_image.h"

#include "ilf/error.h"

namespace ilf {

ClassToImageModel load_class_to_image_model(const RunConfig& config, const torch::Device& device) {
  ClassToImageModel model;
  model.device = device;
  model.options = config.sampling.options;
  model.backbone = load_backbone(config, device);
  if (model.backbone->condition_kind() != ConditionKind::kClassLabel)
    throw Error(config.weights + ": class-conditional sampling needs a DiT backbone; this one is " + model.backbone->family() +
                " (for PixArt give --prompt or --prompts-file)");
  model.sampling = load_sampling(config, *model.backbone, device);
  if (!config.vae.decoder.empty()) {
    model.vae = load_vae(config, kSdVaeLatentScale, device);
  } else if (model.backbone->in_channels() != 1 && model.backbone->in_channels() != 3) {
    throw Error(config.source + ": the model makes " + std::to_string(model.backbone->in_channels()) +
                "-channel latents; set \"vae.decoder\" to a TorchScript VAE decoder");
  }
  return model;
}

torch::Tensor initial_noise(const ClassToImageModel& model, int64_t batch, uint64_t seed) {
  auto generator = at::detail::createCPUGenerator(seed);
  const Backbone& backbone = *model.backbone;
  const int64_t size = backbone.input_size();
  return torch::randn({batch, backbone.in_channels(), size, size}, generator).to(model.device);
}

ClassToImageResult generate(ClassToImageModel& model, const std::vector<int64_t>& labels, uint64_t seed,
                            const ProgressCallback& progress) {
  if (labels.empty()) throw Error("class-to-image: no class labels");
  return generate(model, labels, initial_noise(model, static_cast<int64_t>(labels.size()), seed), progress);
}

ClassToImageResult generate(ClassToImageModel& model, const std::vector<int64_t>& labels, const torch::Tensor& x_T,
                            const ProgressCallback& progress) {
  if (labels.empty()) throw Error("class-to-image: no class labels");
  for (int64_t y : labels)
    if (y < 0 || y >= model.num_classes())
      throw Error("class " + std::to_string(y) + " is outside [0, " + std::to_string(model.num_classes()) + ")");
  Backbone& backbone = *model.backbone;
  const auto batch = static_cast<int64_t>(labels.size());
  if (x_T.dim() != 4 || x_T.size(0) != batch)
    throw Error("class-to-image: the initial noise must be (" + std::to_string(batch) + ", C, S, S), one per label");
  ConditionInputs inputs;
  inputs.class_labels = torch::tensor(labels, torch::kInt64).to(model.device);  // (B,)

  ClassToImageResult result;
  result.sampling = sample(backbone, *model.sampling.method, *model.sampling.solver, model.options, x_T, inputs,
                           backbone.null_condition(inputs), progress);
  result.images = model.vae ? model.vae->decode(result.sampling.samples) : result.sampling.samples;
  return result;
}

}  // namespace ilf
