// Sample-quality metrics used by ilf_eval: Frechet distance between feature statistics (FID when
// the features come from Inception; here any TorchScript feature extractor), class accuracy, and
// fidelity (MSE / PSNR) of samples against same-seed reference samples.
//
// FID convention: statistics in float64; the mean and the unbiased covariance (divide by N - 1, as
// numpy.cov); d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)). The trace of the matrix
// square root is computed exactly as the sum of the square roots of the eigenvalues of
// S1^(1/2) S2 S1^(1/2) (symmetric, similar to S1 S2), which equals the trace of the principal square
// root that scipy.linalg.sqrtm gives in the usual FID code, without its complex round-off.
#pragma once
#include <torch/torch.h>

namespace ilf {

struct FeatureStatistics {
  torch::Tensor mean;        // (D,) float64
  torch::Tensor covariance;  // (D, D) float64
  int64_t count = 0;
};

// features (N, D) with N >= 2 -> their statistics.
FeatureStatistics feature_statistics(const torch::Tensor& features);

// The Frechet distance between two Gaussians given by their statistics.
double frechet_distance(const FeatureStatistics& a, const FeatureStatistics& b);

// Mean per-image PSNR (dB) of images against references, both (N, C, H, W) in [-1, 1] (peak = the
// range 2). Identical images give +infinity for that image; the mean skips them only if all are
// identical (then +infinity).
double mean_psnr(const torch::Tensor& images, const torch::Tensor& references);

// Mean squared error over all pixels, images in [-1, 1].
double mean_squared_error(const torch::Tensor& images, const torch::Tensor& references);

}  // namespace ilf
