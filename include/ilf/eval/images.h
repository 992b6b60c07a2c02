// The image format every metric of this layer takes: what a PNG stores and what the reference packages
// (torchmetrics, clean-fid, ImageReward through PIL, lpips) see, so that scoring an image in memory and
// scoring the PNG written from it give the same number.
//   images: uint8 (N, 3, H, W), RGB, on the CPU (a metric moves what it needs to its own device).
#pragma once
#include <torch/torch.h>

namespace ilf {

// Checks the format above; `what` names the caller in the error ("CLIP score images").
void check_metric_images(const torch::Tensor& images, const char* what);

// images (N, C, H, W) in [-1, 1] (the sampler's decoded output, C in {1, 3}) -> uint8 (N, 3, H, W) with
// the rounding write_png uses (one channel is repeated three times), so that the tensor equals the PNG.
torch::Tensor metric_images_from_unit_range(const torch::Tensor& images);

}  // namespace ilf
