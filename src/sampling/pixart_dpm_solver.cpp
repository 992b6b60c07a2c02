// The official PixArt DPM-Solver++ multistep sampler (see include/ilf/sampling/pixart_dpm_solver.h).
// The schedule tables are built as the official NoiseScheduleVP does (float64 numpy-linspace betas,
// 0.5 * cumsum(log(1 - beta)) in float64, then float32), and every per-time quantity is rounded to
// float32 in the official order.
#include "ilf/sampling/pixart_dpm_solver.h"

#include <algorithm>
#include <cmath>

#include "dpm_update.h"
#include "float32_math.h"
#include "ilf/error.h"

namespace ilf {
namespace {

constexpr int64_t kNumTrainTimesteps = 1000;
constexpr double kBetaStart = 1e-4;  // the "linear" DDPM schedule (scaled by 1000 / T, T = 1000)
constexpr double kBetaEnd = 0.02;
// NoiseScheduleVP drops the tail of the schedule where lambda falls below this (numerical stability);
// it never triggers for the linear schedule (lambda(1) is about -5.06).
constexpr double kClippedLambda = -5.1;

// numpy.linspace(start, stop, n) in float64: i * step + start, with the end point exact.
std::vector<double> numpy_linspace(double start, double stop, int64_t n) {
  std::vector<double> values(n);
  const double step = (stop - start) / static_cast<double>(n - 1);
  for (int64_t i = 0; i < n; ++i) values[i] = static_cast<double>(i) * step + start;
  values[n - 1] = stop;
  return values;
}

}  // namespace

void PixArtDPMSolverOptions::validate() const {
  if (solver_order != 1 && solver_order != 2)
    throw Error("pixart_dpm: solver_order must be 1 or 2 (got " + std::to_string(solver_order) + ")");
}

PixArtDPMSolver::PixArtDPMSolver() : PixArtDPMSolver(PixArtDPMSolverOptions{}) {}

PixArtDPMSolver::PixArtDPMSolver(const PixArtDPMSolverOptions& options) : options_(options) {
  options_.validate();
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const torch::Tensor betas = torch::tensor(numpy_linspace(kBetaStart, kBetaEnd, kNumTrainTimesteps), f64);  // (T,)
  torch::Tensor log_alphas = 0.5 * torch::log(1.0 - betas).cumsum(0);                                        // (T,) float64
  const torch::Tensor log_sigmas = 0.5 * torch::log(1.0 - torch::exp(2.0 * log_alphas));
  const int64_t clipped = ((log_alphas - log_sigmas) < kClippedLambda).sum().item<int64_t>();
  if (clipped > 0) log_alphas = log_alphas.slice(0, 0, log_alphas.size(0) - clipped);
  log_alpha_array_ = log_alphas.to(torch::kFloat32);
  const int64_t total = log_alpha_array_.size(0);
  t_array_ = torch::linspace(0.0, 1.0, total + 1, torch::TensorOptions().dtype(torch::kFloat32)).slice(0, 1);
  t_table_ = detail::to_float_vector(t_array_);
  log_alpha_table_ = detail::to_float_vector(log_alpha_array_);
}

float PixArtDPMSolver::log_alpha_at(float t) const {
  // The official interpolate_fn: find where t sorts among the table times (before equal entries),
  // take that segment (the first or last one outside the table) and interpolate in float32.
  const int64_t size = static_cast<int64_t>(t_table_.size());
  const int64_t pos = std::lower_bound(t_table_.begin(), t_table_.end(), t) - t_table_.begin();
  const int64_t lo = pos == 0 ? 0 : (pos == size ? size - 2 : pos - 1);
  const float x0 = t_table_[lo], x1 = t_table_[lo + 1];
  const float y0 = log_alpha_table_[lo], y1 = log_alpha_table_[lo + 1];
  return y0 + (t - x0) * (y1 - y0) / (x1 - x0);
}

void PixArtDPMSolver::set_timesteps(int64_t num_steps) {
  if (num_steps < 1) throw Error("pixart_dpm: the number of steps must be >= 1 (got " + std::to_string(num_steps) + ")");
  const double t_end = 1.0 / static_cast<double>(t_table_.size());  // 1 / total_N
  const torch::Tensor grid = torch::linspace(1.0, t_end, num_steps + 1, torch::TensorOptions().dtype(torch::kFloat32));
  std::vector<float> times = detail::to_float_vector(grid);  // (N + 1,)

  // log alpha, alpha = exp(log alpha), sigma = sqrt(1 - exp(2 log alpha)),
  // lambda = log alpha - 0.5 log(1 - exp(2 log alpha)).
  const size_t boundaries = times.size();
  std::vector<float> log_alpha(boundaries), twice_log_alpha(boundaries);
  for (size_t i = 0; i < boundaries; ++i) {
    log_alpha[i] = log_alpha_at(times[i]);
    twice_log_alpha[i] = 2.0f * log_alpha[i];
  }
  const std::vector<float> alpha = detail::float32_exp(log_alpha);
  std::vector<float> one_minus_alpha_sq = detail::float32_exp(twice_log_alpha);
  for (float& v : one_minus_alpha_sq) v = 1.0f - v;
  const std::vector<float> log_one_minus_alpha_sq = detail::float32_log(one_minus_alpha_sq);
  std::vector<float> sigma(boundaries), lambda(boundaries);
  for (size_t i = 0; i < boundaries; ++i) {
    sigma[i] = std::sqrt(one_minus_alpha_sq[i]);
    lambda[i] = log_alpha[i] - 0.5f * log_one_minus_alpha_sq[i];
  }
  std::vector<float> neg_h(num_steps);
  for (int64_t k = 0; k < num_steps; ++k) neg_h[k] = -(lambda[k + 1] - lambda[k]);

  // The official loop: the first step is order 1; below 10 steps with lower_order_final the last
  // steps use min(order, steps remaining).
  std::vector<int64_t> orders(num_steps, options_.solver_order);
  orders[0] = 1;
  if (options_.lower_order_final && num_steps < 10)
    for (int64_t k = 1; k < num_steps; ++k) orders[k] = std::min(options_.solver_order, num_steps - k);

  // The official model_wrapper's model time: t_input = (t - 1/total_N) * 1000, in float32.
  const float offset = static_cast<float>(1.0 / static_cast<double>(t_table_.size()));
  std::vector<float> model_times(num_steps);
  for (int64_t k = 0; k < num_steps; ++k) model_times[k] = (times[k] - offset) * 1000.0f;

  torch::Tensor coefficients = detail::dpm_coefficient_table(orders, sigma, alpha, lambda, detail::float32_expm1(neg_h));
  set_step_table(std::move(orders), std::move(model_times), std::move(coefficients));
  time_grid_ = std::move(times);
  alpha_ = alpha;
  sigma_ = std::move(sigma);
}

std::vector<double> PixArtDPMSolver::sigmas() const {
  std::vector<double> sigmas;
  for (size_t i = 0; i < time_grid_.size(); ++i)
    sigmas.push_back(static_cast<double>(sigma_[i]) / static_cast<double>(alpha_[i]));
  return sigmas;
}

}  // namespace ilf
