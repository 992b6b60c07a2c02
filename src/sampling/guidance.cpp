// Classifier-free guidance (see include/ilf/sampling/guidance.h).
#include "ilf/sampling/guidance.h"

#include "ilf/error.h"

namespace ilf {

torch::Tensor classifier_free_guidance(const torch::Tensor& model_out, double scale, int64_t guided_channels) {
  if (model_out.dim() < 2 || model_out.size(0) % 2 != 0)
    throw Error("classifier_free_guidance: model output must be (2B, C, ...) = [cond; uncond], got batch " +
                std::to_string(model_out.dim() > 0 ? model_out.size(0) : 0));
  if (guided_channels < 1 || guided_channels > model_out.size(1))
    throw Error("classifier_free_guidance: guided_channels must lie in [1, " + std::to_string(model_out.size(1)) + "], got " +
                std::to_string(guided_channels));
  const int64_t half = model_out.size(0) / 2;
  const torch::Tensor eps = model_out.narrow(1, 0, guided_channels);  // (2B, g, ...)
  const torch::Tensor cond = eps.narrow(0, 0, half), uncond = eps.narrow(0, half, half);
  const torch::Tensor guided = uncond + scale * (cond - uncond);  // (B, g, ...)
  const torch::Tensor rest = model_out.narrow(1, guided_channels, model_out.size(1) - guided_channels);
  return torch::cat({torch::cat({guided, guided}, 0), rest}, 1);
}

}  // namespace ilf
