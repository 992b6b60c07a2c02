// Fidelity to a reference setting's same-seed images, beside PSNR (eval/metrics.h):
//   - LPIPS as the lpips package computes it (its AlexNet or VGG16 features, the unit-normalised
//     activations' squared differences weighted by its linear heads, spatially averaged, summed over
//     layers), from a weights file converted from the package;
//   - SSIM as torchmetrics' StructuralSimilarityIndexMeasure computes it with its defaults (Gaussian
//     window 11, sigma 1.5, k1 0.01, k2 0.03), on images in [0, 1], data range 1.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>

namespace ilf {

class LpipsModel;  // defined in src/eval/lpips.cpp
using LpipsModelPtr = std::shared_ptr<LpipsModel>;

LpipsModelPtr load_lpips(const std::string& path, const torch::Device& device);

// Per-image LPIPS distances (N,) float64 between uint8 (N, 3, H, W) images and references (same shape).
torch::Tensor lpips_distances(LpipsModel& model, const torch::Tensor& images, const torch::Tensor& references);

// Per-image SSIM (N,) float64 between uint8 (N, 3, H, W) images and references (same shape).
torch::Tensor ssim_per_image(const torch::Tensor& images, const torch::Tensor& references);

}  // namespace ilf
