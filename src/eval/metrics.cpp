// FID statistics, Frechet distance, PSNR and MSE (see include/ilf/eval/metrics.h).
#include "ilf/eval/metrics.h"

#include <cmath>
#include <limits>

#include "ilf/error.h"

namespace ilf {
namespace {

// The symmetric PSD square root of a symmetric matrix (negative round-off eigenvalues clamped to 0).
torch::Tensor symmetric_sqrt(const torch::Tensor& m) {
  auto [values, vectors] = at::linalg_eigh(m, "L");
  return vectors.matmul(torch::diag(values.clamp_min(0).sqrt())).matmul(vectors.transpose(0, 1));
}

}  // namespace

FeatureStatistics feature_statistics(const torch::Tensor& features) {
  if (features.dim() != 2 || features.size(0) < 2) throw Error("feature_statistics needs features shaped (N >= 2, D)");
  const torch::Tensor f = features.detach().to(torch::kCPU, torch::kFloat64);  // (N, D)
  FeatureStatistics s;
  s.count = f.size(0);
  s.mean = f.mean(0);
  const torch::Tensor centred = f - s.mean;
  s.covariance = centred.transpose(0, 1).matmul(centred) / static_cast<double>(s.count - 1);
  return s;
}

double frechet_distance(const FeatureStatistics& a, const FeatureStatistics& b) {
  if (a.mean.sizes() != b.mean.sizes()) throw Error("frechet_distance: feature sizes differ");
  const double mean_term = (a.mean - b.mean).pow(2).sum().item<double>();
  const torch::Tensor a_half = symmetric_sqrt(a.covariance);
  torch::Tensor middle = a_half.matmul(b.covariance).matmul(a_half);
  middle = (middle + middle.transpose(0, 1)) / 2;  // symmetric up to round-off
  const double trace_sqrt = at::linalg_eigvalsh(middle, "L").clamp_min(0).sqrt().sum().item<double>();
  return mean_term + a.covariance.trace().item<double>() + b.covariance.trace().item<double>() - 2 * trace_sqrt;
}

double mean_psnr(const torch::Tensor& images, const torch::Tensor& references) {
  if (images.sizes() != references.sizes()) throw Error("mean_psnr: images and references differ in shape");
  const torch::Tensor diff = (images.to(torch::kFloat64) - references.to(torch::kFloat64)).flatten(1);
  const torch::Tensor mse = diff.pow(2).mean(1);  // (N,)
  const torch::Tensor finite = mse > 0;
  if (finite.sum().item<int64_t>() == 0) return std::numeric_limits<double>::infinity();
  // peak-to-peak range 2 for images in [-1, 1]
  return (10.0 * torch::log10(4.0 / mse.masked_select(finite))).mean().item<double>();
}

double mean_squared_error(const torch::Tensor& images, const torch::Tensor& references) {
  if (images.sizes() != references.sizes()) throw Error("mean_squared_error: images and references differ in shape");
  return (images.to(torch::kFloat64) - references.to(torch::kFloat64)).pow(2).mean().item<double>();
}

}  // namespace ilf
