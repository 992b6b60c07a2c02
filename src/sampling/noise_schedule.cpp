// The discrete DDPM training schedule (see include/ilf/sampling/noise_schedule.h). The float32 tables
// are built with the same LibTorch operations diffusers uses (torch.linspace, cumprod), so they equal
// the reference `alphas_cumprod` bit for bit.
#include "ilf/sampling/noise_schedule.h"

#include <cmath>

#include "ilf/error.h"
#include "ilf/util/strings.h"

namespace ilf {
namespace {

// numpy's round(): half to even (the default floating-point rounding mode).
int64_t round_half_even(double value) { return static_cast<int64_t>(std::nearbyint(value)); }

// The first n of `points` timesteps spread over num_train training timesteps, decreasing (points is n
// or n + 1, see SpacingGrid).
std::vector<int64_t> spaced(TimestepSpacing spacing, int64_t n, int64_t points, int64_t num_train, int64_t steps_offset) {
  std::vector<int64_t> timesteps(n);
  switch (spacing) {
    case TimestepSpacing::kLinspace: {
      // round(linspace(0, T - 1, points))[::-1][:n]; numpy's linspace is i * step with the end point exact.
      const double stop = static_cast<double>(num_train - 1);
      const double step = points > 1 ? stop / static_cast<double>(points - 1) : 0.0;
      for (int64_t k = 0; k < n; ++k) {
        const int64_t i = points - 1 - k;  // index into the ascending linspace
        timesteps[k] = round_half_even((points > 1 && i == points - 1) ? stop : static_cast<double>(i) * step);
      }
      break;
    }
    case TimestepSpacing::kLeading: {
      // arange(0, points) * (T // points), reversed, the first n, plus steps_offset.
      const int64_t ratio = num_train / points;
      for (int64_t k = 0; k < n; ++k) timesteps[k] = (points - 1 - k) * ratio + steps_offset;
      break;
    }
    case TimestepSpacing::kTrailing: {
      // round(arange(T, 0, -T / n)) - 1. numpy fills arange as start + i * ((start + step) - start).
      // For some n (61, 103, ...) numpy's float arange yields an extra element that becomes timestep
      // -1; we keep exactly n steps instead.
      const double start = static_cast<double>(num_train);
      const double delta = (start - start / static_cast<double>(n)) - start;
      for (int64_t k = 0; k < n; ++k) timesteps[k] = round_half_even(start + static_cast<double>(k) * delta) - 1;
      break;
    }
  }
  return timesteps;
}

}  // namespace

void NoiseScheduleOptions::validate() const {
  if (beta_schedule != "linear" && beta_schedule != "scaled_linear")
    throw Error("noise schedule: beta_schedule must be one of linear, scaled_linear (got \"" + beta_schedule + "\")");
  if (num_train_timesteps < 2)
    throw Error("noise schedule: num_train_timesteps must be >= 2 (got " + std::to_string(num_train_timesteps) + ")");
  if (!(beta_start >= kMinBeta && beta_start <= kMaxBeta && beta_end >= kMinBeta && beta_end <= kMaxBeta))
    throw Error("noise schedule: beta_start and beta_end must be numbers from 1e-8 to 0.5 (got " + number_text(beta_start) +
                ", " + number_text(beta_end) + ")");
}

NoiseSchedule NoiseSchedule::create(const NoiseScheduleOptions& options) {
  options.validate();
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  NoiseSchedule schedule;
  if (options.beta_schedule == "linear") {
    schedule.betas = torch::linspace(options.beta_start, options.beta_end, options.num_train_timesteps, f32);
  } else {  // scaled_linear: linspace over sqrt(beta) in float32, then squared
    schedule.betas =
        torch::linspace(std::sqrt(options.beta_start), std::sqrt(options.beta_end), options.num_train_timesteps, f32).pow(2);
  }
  schedule.alphas_cumprod = torch::cumprod(1.0 - schedule.betas, 0);
  // The table must keep a noise level the solvers can divide by: alphas_cumprod of 1 (beta_start
  // 1e-300: sigma 0) or below 1e-30 (100000 timesteps of the default betas: 0, sigma infinite) only
  // gave NaN images. Real schedules end near 4e-5 (DiT) or 5e-3 (SD).
  const double first = schedule.alphas_cumprod[0].item<double>();
  const double last = schedule.alphas_cumprod[-1].item<double>();
  if (!(first < 1.0))
    throw Error("noise schedule: beta_start " + number_text(options.beta_start) +
                " is too small to change alphas_cumprod in float32 (sigma 0 at timestep 0)");
  if (!(last >= kMinAlphasCumprod))
    throw Error("noise schedule: alphas_cumprod falls to " + number_text(last) + " at the last of " +
                std::to_string(options.num_train_timesteps) +
                " timesteps (at least 1e-30 is needed: fewer timesteps or a smaller beta_end)");
  return schedule;
}

torch::Tensor NoiseSchedule::sigmas() const { return ((1.0 - alphas_cumprod) / alphas_cumprod).sqrt(); }

double NoiseSchedule::sigma(int64_t t) const {
  if (t < 0 || t >= num_train_timesteps())
    throw Error("noise schedule: timestep " + std::to_string(t) + " outside [0, " + std::to_string(num_train_timesteps()) + ")");
  const torch::Tensor abar = alphas_cumprod[t];
  return ((1.0 - abar) / abar).sqrt().item<double>();
}

torch::Tensor NoiseSchedule::add_noise(const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& t) const {
  if (x0.sizes() != eps.sizes())
    throw Error("add_noise: x0 " + c10::str(x0.sizes()) + " and eps " + c10::str(eps.sizes()) + " differ in shape");
  if (t.dim() != 1 || x0.dim() < 1 || t.size(0) != x0.size(0))
    throw Error("add_noise: timesteps must have shape (B,) with B = x0.size(0) = " + std::to_string(x0.dim() ? x0.size(0) : 0) +
                ", got " + c10::str(t.sizes()));
  if (t.is_floating_point() || t.is_complex())
    throw Error("add_noise: timesteps must be integers, got " + std::string(c10::toString(t.scalar_type())));
  if (t.numel() > 0) {
    const int64_t lo = t.min().item<int64_t>();
    const int64_t hi = t.max().item<int64_t>();
    if (lo < 0 || hi >= num_train_timesteps())
      throw Error("add_noise: timesteps must lie in [0, " + std::to_string(num_train_timesteps()) + "), got [" +
                  std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  // (B,) -> (B, 1, ..., 1) so that the per-example factors broadcast over x0.
  std::vector<int64_t> factor_shape(x0.dim(), 1);
  factor_shape[0] = x0.size(0);
  const torch::Tensor abar =
      alphas_cumprod.to(x0.device(), x0.scalar_type()).index_select(0, t.to(x0.device(), torch::kLong));  // (B,)
  const torch::Tensor sqrt_abar = abar.sqrt().reshape(factor_shape);
  const torch::Tensor sqrt_one_minus_abar = (1.0 - abar).sqrt().reshape(factor_shape);
  return sqrt_abar * x0 + sqrt_one_minus_abar * eps;
}

std::vector<int64_t> NoiseSchedule::spaced_timesteps(const std::string& solver, TimestepSpacing spacing, SpacingGrid grid,
                                                     int64_t num_steps, int64_t steps_offset) const {
  const int64_t num_train = num_train_timesteps();
  if (num_steps < 1) throw Error(solver + ": the number of steps must be >= 1 (got " + std::to_string(num_steps) + ")");
  if (num_steps > num_train)
    throw Error(solver + ": the number of steps (" + std::to_string(num_steps) + ") cannot exceed the training timesteps (" +
                std::to_string(num_train) + ")");
  const int64_t points = grid == SpacingGrid::kWithFinalBoundary ? num_steps + 1 : num_steps;
  std::vector<int64_t> timesteps = spaced(spacing, num_steps, points, num_train, steps_offset);
  for (size_t k = 0; k < timesteps.size(); ++k) {
    if (timesteps[k] < 0 || timesteps[k] >= num_train)
      throw Error(solver + ": timestep " + std::to_string(timesteps[k]) + " (steps_offset " + std::to_string(steps_offset) +
                  ") lies outside the training range [0, " + std::to_string(num_train) + ")");
    if (k > 0 && timesteps[k] >= timesteps[k - 1])
      throw Error(solver + ": " + std::to_string(num_steps) + " steps with timestep_spacing " + to_string(spacing) +
                  " give repeated timesteps (" + std::to_string(timesteps[k - 1]) + ", " + std::to_string(timesteps[k]) +
                  "); use fewer steps");
  }
  return timesteps;
}

TimestepSpacing parse_timestep_spacing(const std::string& name) {
  if (name == "linspace") return TimestepSpacing::kLinspace;
  if (name == "leading") return TimestepSpacing::kLeading;
  if (name == "trailing") return TimestepSpacing::kTrailing;
  throw Error("timestep_spacing must be one of linspace, leading, trailing (got \"" + name + "\")");
}

std::string to_string(TimestepSpacing spacing) {
  switch (spacing) {
    case TimestepSpacing::kLinspace: return "linspace";
    case TimestepSpacing::kLeading: return "leading";
    case TimestepSpacing::kTrailing: return "trailing";
  }
  return "?";
}

}  // namespace ilf
